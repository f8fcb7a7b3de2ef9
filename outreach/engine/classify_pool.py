"""Classification on a second process, so reading and recording go on meanwhile.

Classifying a message (parsing it, looking for bounce and auto-reply signals, extracting the
new text) costs more than downloading it. When a batch holds enough messages to pay for the
hand-over, the reader sends them to one worker process and fetches the next batch while they
are classified. The worker runs the same pure function, `classify_message`, so the result is
the same; whatever goes wrong with the worker (it died, it was killed, a result would not
pickle), the batch is classified here instead, and the pool is not used again for
RETRY_AFTER seconds (a long-running worker must not stay slow for good after one failure).

The worker comes from a fork server (a clean, single-threaded process started once, with the
classifier already imported), never by forking the reader itself, which may hold threads
(IMAP IDLE) and locks. It ignores SIGINT (Ctrl-C stops the reader, which stops the pool)
and ends by itself when the reader process is gone, however it ended.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date

from outreach.core.inbound.classify import Classification, classify_message

MIN_BATCH = 8  # fewer messages are classified in this process: the hand-over costs more
MAX_BATCH_BYTES = 64 * 1024 * 1024  # more is classified here: the hand-over copies it all
RETRY_AFTER = 600.0  # seconds after a failure before a new worker is tried


def _start_worker(reader_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(reader_pid,), daemon=True).start()


def _exit_with(reader_pid: int) -> None:
    """End the worker when the reader is gone, also after a kill -9: multiprocessing alone
    would leave the worker, the fork server and the resource tracker waiting forever."""
    try:
        watched = os.pidfd_open(reader_pid)  # readable once the process has ended
        select.select([watched], [], [])
    except OSError:  # no pidfd (or it has ended already): look every second
        while True:
            try:
                os.kill(reader_pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(1)
    os._exit(0)


def classify_all(
    raws: Sequence[bytes], unsubscribe: tuple[str, ...], today: date
) -> list[Classification]:
    return [classify_message(raw, unsubscribe_addresses=unsubscribe, today=today) for raw in raws]


class ClassifierPool:
    def __init__(self, min_batch: int = MIN_BATCH, retry_after: float = RETRY_AFTER) -> None:
        self.min_batch = min_batch
        self.retry_after = retry_after
        self.failed_at: float | None = None  # time.monotonic() of the last failure
        self.classified_there = 0  # messages the worker classified (for tests and diagnostics)
        self._executor: ProcessPoolExecutor | None = None

    @property
    def broken(self) -> bool:
        """The worker failed less than `retry_after` seconds ago: classify here meanwhile."""
        return self.failed_at is not None and time.monotonic() - self.failed_at < self.retry_after

    def submit(
        self, raws: Sequence[bytes], unsubscribe: tuple[str, ...], today: date
    ) -> Future[list[Classification]] | None:
        """Start classifying `raws` on the worker; None when they are better done here."""
        if (
            self.broken
            or len(raws) < self.min_batch
            or sum(len(raw) for raw in raws) > MAX_BATCH_BYTES
        ):
            return None
        try:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["outreach.core.inbound.classify"])
                self._executor = ProcessPoolExecutor(
                    1, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
                )
            return self._executor.submit(classify_all, list(raws), unsubscribe, today)
        except Exception:  # noqa: BLE001 - no pool: classify here
            self.give_up()
            return None

    def results(
        self,
        future: Future[list[Classification]] | None,
        raws: Sequence[bytes],
        unsubscribe: tuple[str, ...],
        today: date,
    ) -> list[Classification]:
        if future is not None:
            try:
                found = future.result()
                if len(found) == len(raws):
                    self.classified_there += len(found)
                    return found
            except Exception:  # noqa: BLE001 - the worker failed: the same work, here
                pass
            self.give_up()
        return classify_all(raws, unsubscribe, today)

    def give_up(self) -> None:
        self.failed_at = time.monotonic()
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
