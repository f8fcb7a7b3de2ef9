"""Free TCP ports on the loopback interface, for the local servers of the tests, the demo
and the benchmarks. Nothing here talks to any host but the loopback interface."""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """Return *count* distinct TCP ports that are free on *host* right now.

    All sockets are bound at the same time, so the ports differ from each other. Another
    process may still take a port before the caller binds it (unavoidable, and rare).
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = LOCALHOST) -> int:
    """Return one TCP port that is free on *host* right now."""
    return free_ports(1, host)[0]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
