"""Benchmark re-renders through the REST API of `mixpilot serve` on loopback: previews of a
20 s excerpt (what a listener moving a slider waits for) and full re-renders of the song.

A 3-minute 44.1 kHz stereo song is submitted and processed; then, for one edit per request
(a different compressor threshold each time, so nothing is served from a cache of results):
the first preview (the song is decoded into the renderer's cache), previews at random starts,
and whole-song re-renders. Times are the client's, request to last byte (a 20 s preview is
5.3 MB of 24-bit WAV), on the same machine as the server.

Usage: ``.venv/bin/python -m scripts.bench_rerender [--previews 30] [--renders 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from scripts.bench_gateway import serve
from tests.signals import little_song


def timed(client: httpx.Client, url: str, body: dict[str, object]) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    resp = client.post(url, json=body)
    elapsed = time.perf_counter() - start
    if resp.status_code >= 300:
        raise SystemExit(f"{url}: HTTP {resp.status_code}: {resp.text}")
    return elapsed, resp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--previews", type=int, default=30)
    ap.add_argument("--renders", type=int, default=3)
    ap.add_argument("--song-s", type=float, default=180.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-rerender-") as tmp_name:
        tmp = Path(tmp_name)
        with serve(tmp) as (_, base, keys):
            client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {keys[0]}"}, timeout=300
            )
            song = tmp / "song.flac"
            sf.write(song, little_song(sr=44100, duration_s=args.song_s).T, 44100, format="FLAC")
            job_id = client.post(
                "/v1/jobs", files={"file": ("song.flac", song.read_bytes())}
            ).json()["job_id"]
            while (state := client.get(f"/v1/jobs/{job_id}").json()["state"]) not in (
                "done",
                "failed",
            ):
                time.sleep(0.5)
            if state != "done":
                raise SystemExit(f"the job failed: {client.get(f'/v1/jobs/{job_id}').json()}")
            url = f"/v1/jobs/{job_id}/renders"

            def edit(i: int, preview: dict[str, float] | None = None) -> dict[str, object]:
                body: dict[str, object] = {
                    "base": "strategy",
                    "params": {"comp_threshold_db": -30.0 + 0.01 * i, "comp_ratio": 3.0},
                }
                return body | ({"preview": preview} if preview else {})

            first, _ = timed(client, url, edit(0, {"start_s": 60.0, "duration_s": 20.0}))
            previews, server = [], []
            for i in range(1, args.previews + 1):
                start = float(rng.uniform(0, args.song_s - 20))
                t, resp = timed(client, url, edit(i, {"start_s": start, "duration_s": 20.0}))
                previews.append(t)
                server.append(float(resp.headers["x-mixpilot-render-s"]))
            renders = [timed(client, url, edit(1000 + i))[0] for i in range(args.renders)]
    ms = np.array(previews) * 1000
    print(f"song: {args.song_s:.0f} s, 44.1 kHz stereo FLAC; previews of 20 s")
    print("| what | n | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    print(f"| first preview (decodes the song) | 1 | {first * 1000:.0f} | – | – |")
    print(
        f"| preview, song cached | {len(ms)} | {np.percentile(ms, 50):.0f} | "
        f"{np.percentile(ms, 99):.0f} | {ms.max():.0f} |"
    )
    srv = np.array(server) * 1000
    print(
        f"| of which rendering (server) | {len(srv)} | {np.percentile(srv, 50):.0f} | "
        f"{np.percentile(srv, 99):.0f} | {srv.max():.0f} |"
    )
    rs = np.array(renders) * 1000
    print(
        f"| full re-render, new version | {len(rs)} | {np.percentile(rs, 50):.0f} | "
        f"{np.percentile(rs, 99):.0f} | {rs.max():.0f} |"
    )


if __name__ == "__main__":
    main()
