"""Benchmark the gateway of `mixpilot serve` on loopback: status polls and submissions per
second with p50/p99 latency under a load generator, and the gateway's memory while a 500 MB
upload streams in.

`mixpilot serve` runs as its own process (gateway and the three stages, SQLite, local blobs),
with 16 tenants on the `label` plan (each tenant's rate limit is 3000 requests a minute, so the
load is spread over tenants as a real mix of subscribers would be). Submissions are 3-second
FLAC songs; the stages process them in the same process meanwhile, as they would on one box.

Usage: ``.venv/bin/python -m scripts.bench_gateway [--seconds 10] [--threads 16]``
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import httpx
import numpy as np
import soundfile as sf

from tests.cluster import create_api_key
from tests.infra import serve_process
from tests.signals import little_song


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(
    name: str, threads: int, seconds: float, request: object, clients: list[httpx.Client]
) -> dict[str, float]:
    """``threads`` loops of ``request(client)`` for ``seconds``; rate and latency."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(client: httpx.Client) -> None:
        mine: list[float] = []
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            status = request(client)  # type: ignore[operator]
            mine.append(time.perf_counter() - start)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        with lock:
            latencies.extend(mine)

    pool = [
        threading.Thread(target=worker, args=(clients[i % len(clients)],)) for i in range(threads)
    ]
    begin = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - begin
    ms = np.array(latencies) * 1000
    result = {
        "requests": len(latencies),
        "per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "statuses": dict(sorted(statuses.items())),
    }
    print(f"{name}: {result}", flush=True)
    return result


@contextmanager
def serve(tmp: Path, *, tenants: int = 1) -> Iterator[tuple[Popen[bytes], str, list[str]]]:
    """`mixpilot serve` as its own process on a free port, with ``tenants`` tenants on the
    label plan: (process, base URL, their API keys); stopped on exit."""
    db = f"sqlite:///{tmp / 'jobs.sqlite3'}"
    keys = [create_api_key(db, f"tenant-{i:02d}") for i in range(tenants)]
    with serve_process(tmp, inherit_env=True, auth="api_key", log_level="WARNING") as (
        proc,
        base,
        _,
    ):
        yield proc, base, keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--upload-mb", type=float, default=500.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_name:
        tmp = Path(tmp_name)
        with serve(tmp, tenants=16) as (proc, base, keys):
            clients = [
                httpx.Client(base_url=base, headers={"Authorization": f"Bearer {k}"}, timeout=60)
                for k in keys
            ]
            song = tmp / "song.flac"
            sf.write(song, little_song(sr=44100, duration_s=3.0).T, 44100, format="FLAC")
            data = song.read_bytes()
            jobs = [
                c.post("/v1/jobs", files={"file": ("s.flac", data)}).json()["job_id"]
                for c in clients
            ]
            job_of = {id(c): j for c, j in zip(clients, jobs, strict=True)}

            def poll(client: httpx.Client) -> int:
                return client.get(f"/v1/jobs/{job_of[id(client)]}").status_code

            def submit(client: httpx.Client) -> int:
                return client.post("/v1/jobs", files={"file": ("s.flac", data)}).status_code

            print(f"gateway RSS at rest: {rss_mb(proc.pid):.0f} MB", flush=True)
            polls = load("status poll", args.threads, args.seconds, poll, clients)
            submits = load("submit (3 s FLAC)", 8, args.seconds, submit, clients)

            # A large upload: 24-bit 96 kHz stereo, about upload_mb, within the label plan.
            big = tmp / "big.wav"
            frames = int(args.upload_mb * 1e6 / (3 * 2))
            with sf.SoundFile(big, "w", 96000, 2, subtype="PCM_24") as f:
                rng = np.random.default_rng(0)
                block = (0.1 * rng.standard_normal((96000 * 10, 2))).astype(np.float32)
                for start in range(0, frames, block.shape[0]):
                    f.write(block[: min(block.shape[0], frames - start)])
            size_mb = big.stat().st_size / 2**20
            before = rss_mb(proc.pid)
            peak = [before]
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(proc.pid))
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch)
            watcher.start()
            started = time.perf_counter()
            with open(big, "rb") as f:
                r = clients[0].post("/v1/jobs", files={"file": ("big.wav", f)}, timeout=600)
            upload_s = time.perf_counter() - started
            done.set()
            watcher.join()
            print(
                f"500 MB upload: {size_mb:.0f} MiB in {upload_s:.1f} s -> HTTP {r.status_code}; "
                f"gateway RSS {before:.0f} MB before, peak {peak[0]:.0f} MB while streaming "
                f"(+{peak[0] - before:.0f} MB)",
                flush=True,
            )
            print("\n| what | rate | p50 ms | p99 ms |")
            print("|---|---|---|---|")
            for name, res in (("status poll", polls), ("submit 3 s FLAC", submits)):
                print(
                    f"| {name} | {res['per_s']:.0f}/s | {res['p50_ms']:.1f} | {res['p99_ms']:.1f} |"
                )


if __name__ == "__main__":
    main()
