"""Background threads that keep the network busy: decoding ahead of it, encoding behind it.

Threads (not processes) suffice: PIL and numpy release the GIL while decoding, resizing and
compressing, and the network itself runs in torch's own threads.
"""
from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TakeTurns:
    """The network and the image threads take turns on a CPU instead of sharing it.

    On a CPU the network already keeps every core busy (torch's own threads). Image jobs running at
    the same time preempt those threads in the middle of an operation, and the others wait for
    them at the operation's end, so both go slower than taking turns: image jobs run together
    (`shared`) between forwards, and a forward runs alone (`exclusive`); a waiting forward holds
    back new image jobs. Disabled (no-op) where the network runs on an accelerator.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._forwards_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._forwards_waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with self._cond:
            self._forwards_waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._forwards_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 2, ahead: int = 8) -> Iterator[R]:
    """`map(fn, items)` computed by `workers` threads, at most `ahead` items in advance, yielded in
    order. An exception is raised when its item's turn comes; leaving the loop early cancels the
    rest."""
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="segadapter-decode")
    pending: deque[Future] = deque()
    it = iter(items)
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= max(1, ahead):
                break
        while pending:
            result = pending.popleft().result()
            for item in it:  # refill one: keep `ahead` in flight
                pending.append(pool.submit(fn, item))
                break
            yield result
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)


class BackgroundWriter:
    """Runs submitted jobs (encode + write) in worker threads, at most `max_pending` queued so
    results do not pile up in memory; the first error is raised by the next `submit` or `close`."""

    def __init__(self, workers: int = 1, max_pending: int = 8):
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="segadapter-write")
        self._slots = threading.BoundedSemaphore(max(1, max_pending))
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.results: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._slots.acquire()
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        self._slots.release()
        with self._lock:
            if future.cancelled():
                return
            if future.exception() is not None:
                self._error = self._error or future.exception()
            else:
                self.results.append(future.result())

    def _raise(self) -> None:
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def close(self) -> None:
        """Wait for every job; raise the first error."""
        self._pool.shutdown(wait=True)
        self._raise()

    def abort(self) -> None:
        """Drop queued jobs and wait for running ones (after an error elsewhere)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
