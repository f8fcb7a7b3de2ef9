"""Classification on the worker process gives what classifying here gives, and any trouble
with the worker falls back to classifying here."""

from __future__ import annotations

import os
import signal
from datetime import date
from pathlib import Path

import pytest

from outreach.classify_pool import ClassifierPool, classify_all

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
