"""`segadapter serve` under load (benchmarks/serve_load.py at small scale): several client
processes at once with bad uploads among good ones, the server's memory over the run, and its
queue bound (a request beyond it refused at once, never left hanging)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference_helpers import save_tiny
from segadapter import Inferencer, Preprocessing

ROOT = Path(__file__).resolve().parents[1]
PRE = Preprocessing(scale=(96, 72), classes=["sky", "road", "car"], palette=[[10, 20, 30], [200, 0, 0], [0, 200, 0]])

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("serve-load") / "m", preprocessing=PRE)


def test_load_script_at_small_scale(model, tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), str(model), "--clients", "3",
                           "--seconds", "8", "--single", "4", "--queue-size", "3", "--server-threads", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(figures["checks"].values())
    assert figures["good"] > 0 and figures["bad"] > 0 and figures["problems"] == 0
    assert figures["burst"]["refused"] > 0 and figures["burst"]["hanging"] == 0
    assert figures["load_p95_s"] > 0 and figures["single_p95_s"] > 0


def test_a_request_beyond_the_queue_is_refused_not_left_waiting(model, tmp_path):
    """The model held busy (its lock taken, as a long request would): `queue_size` requests wait,
    the next one is refused at once with "queue full"; freed, the waiting ones are all answered."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError

    from segadapter.serve.app import API_NAME, Backend, build_app, launch

    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(image)
    backend = Backend(Inferencer(model, device="cpu"))
    demo = build_app(backend)
    _, url = launch(demo, backend, port=_free_port(), queue_size=2, block=False)
    try:
        client = Client(url, verbose=False)

        def ask():
            return client.predict([handle_file(str(image))], 0.5, "", api_name=f"/{API_NAME}")

        with ThreadPoolExecutor(4) as pool:
            with backend._lock:  # busy: the first request runs (and waits for the model), two queue
                running = [pool.submit(ask)]
                _wait_for(lambda: demo._queue.get_active_worker_count() == 1, 30)  # out of the queue, running
                waiting = [pool.submit(ask) for _ in range(2)]
                _wait_for(lambda: len(demo._queue) == 2, 30)
                start = time.monotonic()
                with pytest.raises(QueueError, match="(?i)queue is full"):
                    ask()
                assert time.monotonic() - start < 10
            done, hanging = wait(running + waiting, timeout=120)
            assert not hanging
            for job in done:
                assert "Segmented 1 image" in job.result()[3]
    finally:
        demo.close()


def test_memory_stays_flat_when_many_server_threads_take_turns(tmp_path, monkeypatch):
    """Gradio runs each request on one of its many worker threads. Run by each of them in turn,
    the model left per-thread scratch memory behind on every thread, and the server grew by a
    gigabyte under load; the backend does all its work on one thread of its own."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from serve_load import make_inputs, rss_mb

    from segadapter.serve.app import Backend

    pre = Preprocessing(scale=(480, 360), classes=PRE.classes, palette=PRE.palette)
    backend = Backend(Inferencer(save_tiny(tmp_path / "m", preprocessing=pre), device="cpu"))
    files = make_inputs(tmp_path)
    names = ["good0.png", "good1.png", "notes.png", "cut.png"]

    def request(i):
        out = backend.segment([str(files[names[i % len(names)]])], 0.5)
        backend.gallery(out.overlays, out.folder)

    for i in range(8):  # warm-up: one user
        request(i)
    warm = rss_mb(os.getpid())
    with ThreadPoolExecutor(40) as pool:  # then many, each request on whichever thread is free
        list(pool.map(request, range(160)))
    end = rss_mb(os.getpid())
    assert end <= warm * 1.1 + 100, (warm, end)


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
