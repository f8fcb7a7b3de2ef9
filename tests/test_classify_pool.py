"""Classification on the worker process gives what classifying here gives, and any trouble
with the worker falls back to classifying here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from outreach.engine.classify_pool import ClassifierPool, classify_all

MAIL = sorted((Path(__file__).parent / "fixtures" / "mail").rglob("*.eml"))
TODAY = date(2026, 11, 29)
UNSUBSCRIBE = ("unsubscribe@district.test",)


@pytest.fixture
def pool():
    pool = ClassifierPool(min_batch=2)
    yield pool
    pool.close()


def test_the_worker_classifies_the_fixture_corpus_exactly_as_here(pool):
    raws = [path.read_bytes() for path in MAIL]
    assert len(raws) > 100
    future = pool.submit(raws, UNSUBSCRIBE, TODAY)
    assert future is not None
    there = future.result(timeout=120)
    assert there == classify_all(raws, UNSUBSCRIBE, TODAY)
    assert {c.kind for c in there} >= {"reply", "auto_reply", "bounce", "unsubscribe"}
    assert pool.results(future, raws, UNSUBSCRIBE, TODAY) == there and not pool.broken


def test_small_batches_stay_here(pool):
    assert pool.submit([MAIL[0].read_bytes()], UNSUBSCRIBE, TODAY) is None


def test_a_killed_worker_falls_back_to_classifying_here(pool):
    raws = [path.read_bytes() for path in MAIL[:20]]
    warm = pool.submit(raws, UNSUBSCRIBE, TODAY)
    assert warm is not None
    warm.result(timeout=120)
    executor = pool._executor
    assert executor is not None
    for pid in list(executor._processes):  # the worker dies (OOM killer, kill -9)
        os.kill(pid, signal.SIGKILL)
    future = pool.submit(raws, UNSUBSCRIBE, TODAY)
    results = pool.results(future, raws, UNSUBSCRIBE, TODAY)
    assert results == classify_all(raws, UNSUBSCRIBE, TODAY)
    assert pool.broken
    assert pool.submit(raws, UNSUBSCRIBE, TODAY) is None, "a broken pool is not used again"


def test_a_new_worker_is_tried_after_the_retry_interval():
    pool = ClassifierPool(min_batch=2, retry_after=0.5)
    try:
        raws = [path.read_bytes() for path in MAIL[:20]]
        warm = pool.submit(raws, UNSUBSCRIBE, TODAY)
        assert warm is not None
        pool.results(warm, raws, UNSUBSCRIBE, TODAY)
        assert pool._executor is not None
        for pid in list(pool._executor._processes):
            os.kill(pid, signal.SIGKILL)
        pool.results(pool.submit(raws, UNSUBSCRIBE, TODAY), raws, UNSUBSCRIBE, TODAY)
        assert pool.broken and pool.submit(raws, UNSUBSCRIBE, TODAY) is None
        time.sleep(0.6)
        assert not pool.broken
        again = pool.submit(raws, UNSUBSCRIBE, TODAY)
        assert again is not None, "a new worker after the interval"
        before = pool.classified_there
        assert pool.results(again, raws, UNSUBSCRIBE, TODAY) == classify_all(
            raws, UNSUBSCRIBE, TODAY
        )
        assert pool.classified_there == before + len(raws) and not pool.broken
    finally:
        pool.close()


def test_the_worker_ends_when_the_reader_is_killed(tmp_path):
    """kill -9 of the reader leaves no worker, fork server or resource tracker behind."""
    script = tmp_path / "reader.py"
    script.write_text(
        "import os, sys, time\n"
        "from datetime import date\n"
        "from outreach.engine.classify_pool import ClassifierPool\n"
        "if __name__ == '__main__':\n"
        "    pool = ClassifierPool(min_batch=1)\n"
        "    pool.submit([b'Subject: x\\r\\n\\r\\nhi\\r\\n'], (), date(2026, 1, 1)).result()\n"
        "    print(*pool._executor._processes, flush=True)\n"
        "    time.sleep(60)\n",
        encoding="utf-8",
    )
    reader = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    workers = [int(pid) for pid in reader.stdout.readline().split()]
    assert workers
    family = [workers[0], *children_of(reader.pid)]
    reader.kill()
    reader.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in family):
        time.sleep(0.1)
    assert not [pid for pid in family if alive(pid)], "processes left behind"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_batch_too_big_to_copy_stays_here(pool, monkeypatch):
    monkeypatch.setattr("outreach.engine.classify_pool.MAX_BATCH_BYTES", 1000)
    assert pool.submit([b"x" * 600, b"y" * 600], UNSUBSCRIBE, TODAY) is None
    assert pool.submit([b"x" * 400, b"y" * 400], UNSUBSCRIBE, TODAY) is not None
