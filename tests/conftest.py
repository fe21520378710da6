"""Fixtures shared by several test files, and the session's check for processes left running."""
import multiprocessing

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: threads only add scheduling noise (and the machine may be shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_sessionfinish(session, exitstatus):
    """Child processes still alive now would make this process hang at exit: `multiprocessing`
    joins its children then, and a DataLoader worker that ignores SIGTERM never ends (CI once
    passed every test and then waited out its time limit). Name them, end them, fail the run."""
    left = multiprocessing.active_children()
    if not left:
        return
    for proc in left:
        proc.kill()
        proc.join(10)
    names = ", ".join(f"{p.name} (pid {p.pid})" for p in left)
    print(f"\nThe tests left {len(left)} child process(es) running: {names}. Killed; the run fails.")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
