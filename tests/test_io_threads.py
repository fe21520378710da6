"""The background image threads of `Inferencer`: order, errors, and turn-taking with the network."""
from __future__ import annotations

import threading
import time

import pytest

from segadapter.inference.io_threads import BackgroundWriter, TakeTurns, ordered_map


def test_ordered_map_keeps_order_and_raises_at_the_failing_item():
    def slow_square(i):
        time.sleep(0.002 * (5 - i % 5))  # later items finish first
        if i == 7:
            raise ValueError("item 7")
        return i * i

    got = []
    with pytest.raises(ValueError, match="item 7"):
        for value in ordered_map(slow_square, range(10), workers=3, ahead=4):
            got.append(value)
    assert got == [i * i for i in range(7)]


def test_background_writer_reports_the_first_error_on_close():
    writer = BackgroundWriter(workers=2, max_pending=2)
    writer.submit(lambda: 1)
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.close()


def _intervals(turns: TakeTurns, shared_jobs: int = 12, forwards: int = 6):
    """Run image jobs in 3 threads and forwards in this one; (kind, start, end) of each."""
    log, lock = [], threading.Lock()

    def record(kind, seconds):
        start = time.perf_counter()
        time.sleep(seconds)
        with lock:
            log.append((kind, start, time.perf_counter()))

    def image_job():
        with turns.shared():
            record("image", 0.004)

    workers = [threading.Thread(target=lambda: [image_job() for _ in range(shared_jobs // 3)]) for _ in range(3)]
    for w in workers:
        w.start()
    for _ in range(forwards):
        with turns.exclusive():
            record("forward", 0.004)
        time.sleep(0.001)
    for w in workers:
        w.join(timeout=10)
    assert not any(w.is_alive() for w in workers), "an image thread never got its turn"
    return log


def _overlaps(log) -> int:
    forwards = [(s, e) for kind, s, e in log if kind == "forward"]
    images = [(s, e) for kind, s, e in log if kind == "image"]
    return sum(1 for fs, fe in forwards for s, e in images if s < fe and fs < e)


def test_a_forward_never_shares_the_cpu_with_image_jobs():
    log = _intervals(TakeTurns(enabled=True))
    assert sum(kind == "forward" for kind, _, _ in log) == 6 and sum(kind == "image" for kind, _, _ in log) == 12
    assert _overlaps(log) == 0
    # image jobs do run together between forwards
    images = sorted((s, e) for kind, s, e in log if kind == "image")
    assert any(b[0] < a[1] for a, b in zip(images, images[1:]))


def test_turn_taking_off_lets_them_overlap():
    # the same schedule without turns overlaps: the check above can fail
    assert _overlaps(_intervals(TakeTurns(enabled=False))) > 0
