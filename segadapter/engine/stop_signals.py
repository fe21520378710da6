"""Stop requests from the outside: SIGTERM, SIGINT and SIGUSR1 end training after the current step.

Clusters end jobs with SIGTERM (preemption, `scancel`) and warn with SIGUSR1 before the time limit
(SLURM's `--signal`); Ctrl-C is SIGINT. The first one only sets a flag: the trainer finishes the
step it is in, writes a checkpoint and returns, so a requeued job resumes where this one stopped.
A SIGINT while a stop is pending raises KeyboardInterrupt at once: the checkpoint being written, if
any, is abandoned (checkpoints are published atomically, so the last complete one stays valid).
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# SIGINT is the user at the keyboard (130 = 128 + SIGINT, the shell's convention); the others ask
# a scheduler to requeue, which must see success to run the job again.
_EXIT_CODES = {signal.SIGINT: 130}


class StopSignals:
    """Context manager: catch the stop signals while training, restore the old handlers after.

    Python delivers signals to the main thread only; in any other thread this does nothing and
    the signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str | None:
        return self.received.name if self.received is not None else None

    def exit_code(self) -> int:
        """The process exit code after a graceful stop: 0 (requeue-friendly), or 130 after Ctrl-C."""
        return _EXIT_CODES.get(self.received, 0) if self.received is not None else 0

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.received is not None:
            if sig == signal.SIGINT:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now, leave the last checkpoint alone
            return  # SIGTERM after SIGUSR1, torchrun forwarding what the job step also got, ...
        self.received = sig
        print(f"received {sig.name}: stopping after this step and writing a checkpoint"
              + (" (Ctrl-C again to stop at once)" if sig == signal.SIGINT else ""), file=sys.stderr, flush=True)


class IgnoreStopSignals:
    """`worker_init_fn` wrapper for DataLoader workers: ignore the stop signals there.

    A scheduler signals every process of the job and Ctrl-C reaches the whole process group; a
    worker dying of it would make the main process fail before it can write its checkpoint. The
    workers end when the run does (data.loader.stop_workers): ignoring SIGTERM, they would otherwise
    outlive an exiting process. A class, not a closure, so the spawn start method can pickle it.
    """

    def __init__(self, inner=None) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if self.inner is not None:
            self.inner(worker_id)
