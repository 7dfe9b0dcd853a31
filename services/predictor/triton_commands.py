"""``mixpilot triton-repo`` (write the model repository) and ``mixpilot triton`` (run a local
Triton server on it, for development)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.predictor.triton_repository import RepositoryOptions, write_repository
from services.predictor.triton_server import Ports, server_command


def _add_repository_options(ap: argparse.ArgumentParser) -> None:
    defaults = RepositoryOptions()
    ap.add_argument(
        "--kind",
        choices=("cpu", "gpu"),
        default=defaults.kind,
        help="instance kind: KIND_CPU (here, CI) or KIND_GPU (a GPU node)",
    )
    ap.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="leave dynamic batching off (each request runs alone)",
    )
    ap.add_argument(
        "--max-batch-size",
        type=int,
        default=defaults.max_batch_size,
        help=f"most clips in one forward pass (default {defaults.max_batch_size})",
    )
    ap.add_argument(
        "--queue-delay-us",
        type=int,
        default=defaults.queue_delay_us,
        help=f"longest wait for a batch to fill, microseconds (default {defaults.queue_delay_us})",
    )
    ap.add_argument(
        "--instances",
        type=int,
        default=defaults.instances,
        help="instances of each model (default 1)",
    )
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=defaults.torch_threads,
        help="torch threads per CPU instance (default 1; 0: one per core)",
    )


def _options(args: argparse.Namespace) -> RepositoryOptions:
    for name in ("max_batch_size", "instances"):
        if getattr(args, name) < 1:
            raise SystemExit(f"mixpilot: error: --{name.replace('_', '-')} must be at least 1")
    if args.queue_delay_us < 0 or args.torch_threads < 0:
        raise SystemExit("mixpilot: error: --queue-delay-us and --torch-threads must be >= 0")
    return RepositoryOptions(
        kind=args.kind,
        batching=args.batching,
        max_batch_size=args.max_batch_size,
        queue_delay_us=args.queue_delay_us,
        instances=args.instances,
        torch_threads=args.torch_threads,
    )


def add_repository_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("outdir", type=Path, help="directory of the model repository")
    _add_repository_options(ap)


def add_server_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--dir",
        type=Path,
        default=Path("mixpilot-data/triton"),
        help="working directory: repository/ and backends/ (default %(default)s)",
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    ap.add_argument("--grpc-port", type=int, default=Ports.grpc)
    ap.add_argument("--http-port", type=int, default=Ports.http)
    ap.add_argument("--metrics-port", type=int, default=Ports.metrics)
    _add_repository_options(ap)


def run_repository(args: argparse.Namespace) -> int:
    out = write_repository(args.outdir, _options(args))
    print(
        f"model repository for Triton written to {out} ({args.kind}, "
        f"dynamic batching {'on' if args.batching else 'off'})"
    )
    return 0


def run_server(args: argparse.Namespace) -> int:
    """Write the repository, then replace this process with ``tritonserver``."""
    repository = write_repository(args.dir / "repository", _options(args))
    ports = Ports(grpc=args.grpc_port, http=args.http_port, metrics=args.metrics_port)
    cmd, env = server_command(repository, args.dir / "backends", ports, host=args.host)
    print(
        f"starting Triton on {args.host}: gRPC {ports.grpc} (set MIXPILOT_TRITON_URL="
        f"{args.host}:{ports.grpc}), HTTP {ports.http}, metrics "
        f"http://{args.host}:{ports.metrics}/metrics",
        flush=True,
    )
    os.execve(cmd[0], cmd, env)
    return 0  # pragma: no cover - execve does not return


def add_check_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("url", help="host:port of the Triton server's gRPC endpoint")
    ap.add_argument("--song", help="an audio file to compare on (default: a generated song)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the generated song")


def run_check(args: argparse.Namespace) -> int:
    """`mixpilot triton-check URL`: the served models against local inference on a generated
    song; exit 0 when they agree within the tolerances."""
    from services.analyzer.analysis import analyze
    from services.common.audio_io import read_audio
    from services.predictor.triton_parity import NORMALISED_TOLERANCE, PHYSICAL_TOLERANCE, parity

    if args.song:
        audio, sr, _ = read_audio(args.song)
    else:
        from services.predictor.songgen import generate_song

        generated = generate_song("pop", 0, duration_s=args.seconds)
        audio, sr = generated.mix, generated.sample_rate
    result = parity(args.url, audio, sr, analyze(audio, sr))
    print(f"{result.clips} clips; largest difference per model, normalised / physical units:")
    for name in result.normalised:
        print(f"  {name}: {result.normalised[name]:.2e} / {result.physical[name]:.2e}")
    verdict = "agree" if result.ok else "DISAGREE"
    print(f"{verdict} (tolerances {NORMALISED_TOLERANCE:g} / {PHYSICAL_TOLERANCE:g})")
    return 0 if result.ok else 1
