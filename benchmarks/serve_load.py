"""Load test of `segadapter serve`: several users at once, some sending bad uploads.

    python benchmarks/serve_load.py RUN [--clients 8] [--seconds 60] [--json out.json]

Starts `segadapter serve RUN` on 127.0.0.1 in its own process and drives it with gradio_client
from `--clients` processes (each one a user who opens a new page every few requests) for
`--seconds`. Every `--bad-every`-th request is a bad upload, in turn: a file that is not an
image, a 42 M-pixel image (over the 40 M default limit) and a truncated PNG. Then a burst of
more requests than the server's queue holds. Checks, and the exit code says whether all held:

- every good request is answered with the class-id PNG the server gave it alone (and that
  answer matches the `Inferencer` run here);
- every bad upload is refused with its own message, no request ends in a server error (500)
  and the server logs no traceback;
- the server's RSS at the end is within 10% + 100 MB of its RSS after warm-up;
- the queue is bounded: in the burst, requests beyond it are refused at once ("queue full"),
  none is left hanging, the rest are answered.

Reports p50/p95 latency of good requests under load beside a single client's. Linux: RSS is
read from /proc.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from PIL import Image

API = "/segment"
# what the page says for each bad upload (segadapter/serve/uploads.py)
BAD = {"notes.png": "not an image", "huge.png": "M pixels, over the limit", "cut.png": "truncated or corrupt"}


def make_inputs(folder: Path, size=(480, 360)) -> dict[str, Path]:
    """Two good pictures (smooth, so their PNGs are small), the bad uploads, and a heavy good one
    for the burst (slow to decode and to write back at its full size)."""
    rng = np.random.default_rng(0)
    files = {}
    for i in range(2):
        low = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
        files[f"good{i}.png"] = folder / f"good{i}.png"
        Image.fromarray(low).resize(size, Image.BICUBIC).save(files[f"good{i}.png"])
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200), Image.BICUBIC) \
        .save(folder / "heavy.png", compress_level=1)
    files["heavy.png"] = folder / "heavy.png"
    (folder / "notes.png").write_text("these are meeting notes, not a picture\n")
    Image.new("L", (7000, 6000)).save(folder / "huge.png")  # 42 M pixels in a few kB
    data = files["good0.png"].read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    files.update({n: folder / n for n in BAD})
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(run: str, port: int, queue_size: int, log: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "segadapter", "serve", run, "--port", str(port), "--queue-size", str(queue_size)]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def connect(url: str, server: subprocess.Popen, log: Path, timeout: float = 180):
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def request(client, path: Path) -> tuple[str, np.ndarray | None]:
    """(status text, class-id label or None) for one upload."""
    from gradio_client import handle_file

    _, _, downloads, status, _ = client.predict([handle_file(str(path))], 0.5, "", api_name=API)
    label = np.asarray(Image.open(downloads[0])) if downloads else None
    return status, label


def judge(name: str, status: str, label, expected: dict[str, np.ndarray]) -> str | None:
    """None when the answer is right, else what is wrong with it."""
    if name in BAD:
        if label is not None or f"{name}: " not in status or BAD[name] not in status:
            return f"{name}: not refused with its message: {status[:200]}"
        return None
    if label is None or "Segmented 1 image" not in status:
        return f"{name}: no answer: {status[:200]}"
    if not np.array_equal(label, expected[name]):
        return f"{name}: answer differs from its answer alone ({(label != expected[name]).mean():.2%} of pixels)"
    return None


def user(args: tuple) -> list[dict]:
    """One client process: requests until the deadline, a new page (session) every 10 requests."""
    url, files, expected, deadline, bad_every, index = args
    from gradio_client import Client

    bad_names = list(BAD)
    records, client, i = [], None, 0
    while time.time() < deadline:
        if i % 10 == 0:
            client = Client(url, verbose=False)
        bad = (i + index) % bad_every == bad_every - 1
        name = bad_names[(i // bad_every + index) % len(bad_names)] if bad else f"good{(i + index) % 2}.png"
        start = time.perf_counter()
        try:
            status, label = request(client, Path(files[name]))
            problem = judge(name, status, label, expected)
        except Exception as e:  # a server error (500), a refused or broken connection: all count against it
            problem = f"{name}: {type(e).__name__}: {str(e)[:200]}"
        records.append({"name": name, "seconds": time.perf_counter() - start, "problem": problem})
        i += 1
    return records


def burst(url: str, heavy: Path, jobs: int, timeout: float) -> dict:
    """`jobs` heavy requests at once from one page: beyond the queue they must be refused at once."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    answered = refused = 0
    problems = []

    def one():
        return request(client, heavy)

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(one) for _ in range(jobs)]
        done, hanging = wait(futures, timeout=timeout)
        for f in done:
            e = f.exception()
            if e is None:
                status, label = f.result()
                if label is not None and "Segmented 1 image" in status:
                    answered += 1
                else:
                    problems.append(f"heavy.png: {status[:200]}")
            elif "queue is full" in str(e).lower():
                refused += 1
            else:
                problems.append(f"heavy.png: {type(e).__name__}: {str(e)[:200]}")
        for f in hanging:
            f.cancel()
    return {"jobs": jobs, "answered": answered, "refused": refused, "hanging": len(hanging),
            "seconds": time.perf_counter() - start, "problems": problems}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="model folder or training run folder to serve")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--bad-every", type=int, default=4, help="every N-th request of a client is a bad upload [4]")
    p.add_argument("--queue-size", type=int, default=16, help="the server's --queue-size [16]")
    p.add_argument("--single", type=int, default=20, help="requests timed one at a time [20]")
    p.add_argument("--server-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the load test
            p.error(problem)

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    files = make_inputs(work)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "server.log"
    server = start_server(args.run, port, args.queue_size, log, args.server_threads)
    try:
        client = connect(url, server, log)
        say(f"server up on {url}; warm-up and {args.single} requests from one client")
        from segadapter import Inferencer

        reference = Inferencer(args.run, device="cpu")
        expected, agreement = {}, {}
        for name in ("good0.png", "good1.png"):  # warm-up: each picture's answer alone
            for _ in range(3):
                status, expected[name] = request(client, files[name])
            agreement[name] = float((expected[name] == reference(str(files[name])).label).mean())
        for name in BAD:
            request(client, files[name])
        single = []
        for i in range(args.single):
            start = time.perf_counter()
            request(client, files[f"good{i % 2}.png"])
            single.append(time.perf_counter() - start)
        rss_warm = rss_mb(server.pid)

        say(f"{args.clients} clients for {args.seconds:.0f} s")
        deadline = time.time() + args.seconds
        jobs = [(url, {k: str(v) for k, v in files.items()}, expected, deadline, args.bad_every, i)
                for i in range(args.clients)]
        peak = rss_warm
        with mp.get_context("spawn").Pool(args.clients) as pool:
            pending = pool.map_async(user, jobs)
            while not pending.ready():
                peak = max(peak, rss_mb(server.pid))
                pending.wait(1.0)
            records = [r for rs in pending.get() for r in rs]
        rss_end = rss_mb(server.pid)
        say(f"burst of {args.queue_size + 2 * args.clients} requests against a queue of {args.queue_size}")
        bursts = burst(url, files["heavy.png"], args.queue_size + 2 * args.clients, timeout=600)
        rss_after_burst = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
        server_log = log.read_text()
        shutil.rmtree(work, ignore_errors=True)

    good = [r["seconds"] for r in records if r["name"] not in BAD and r["problem"] is None]
    problems = [r["problem"] for r in records if r["problem"]] + bursts["problems"]
    figures = {
        "clients": args.clients, "seconds": args.seconds, "requests": len(records),
        "good": sum(r["name"] not in BAD for r in records), "bad": sum(r["name"] in BAD for r in records),
        "problems": len(problems), "first_problems": problems[:5],
        "single_p50_s": percentile(single, 50), "single_p95_s": percentile(single, 95),
        "load_p50_s": percentile(good, 50), "load_p95_s": percentile(good, 95),
        "throughput_rps": len(records) / args.seconds,
        "rss_warm_mb": rss_warm, "rss_peak_mb": peak, "rss_end_mb": rss_end, "rss_after_burst_mb": rss_after_burst,
        "agreement_with_inferencer": agreement, "burst": {k: v for k, v in bursts.items() if k != "problems"},
        "server_tracebacks": server_log.count("Traceback"),
    }
    checks = {
        "every request right (good answered, bad refused with its message, no 500)": not problems,
        "answers match the Inferencer here (>= 99.9% of pixels)": min(agreement.values()) >= 0.999,
        "no traceback in the server's log": figures["server_tracebacks"] == 0,
        "RSS at the end within 10% + 100 MB of after warm-up": rss_end <= rss_warm * 1.1 + 100,
        "queue bounded (burst: some refused at once, none hanging, the rest answered)":
            bursts["refused"] > 0 and bursts["hanging"] == 0
            and bursts["answered"] + bursts["refused"] == bursts["jobs"],
    }
    figures["checks"] = checks
    print(f"{len(records)} requests from {args.clients} clients in {args.seconds:.0f} s "
          f"({figures['good']} good, {figures['bad']} bad uploads), {len(problems)} wrong")
    print(f"latency of good requests: one client p50 {figures['single_p50_s']:.3f} s, "
          f"p95 {figures['single_p95_s']:.3f} s; {args.clients} clients p50 {figures['load_p50_s']:.3f} s, p95 {figures['load_p95_s']:.3f} s")
    print(f"server RSS: {rss_warm:.0f} MB after warm-up, {peak:.0f} MB peak, {rss_end:.0f} MB at the end "
          f"({rss_after_burst:.0f} MB after the burst)")
    print(f"burst of {bursts['jobs']} heavy requests, queue {args.queue_size}: {bursts['answered']} answered, "
          f"{bursts['refused']} refused (queue full), {bursts['hanging']} hanging, {bursts['seconds']:.1f} s")
    for p_ in problems[:5]:
        print("  wrong:", p_)
    for name, ok in checks.items():
        print(("PASS " if ok else "FAIL ") + name)
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, figures)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
