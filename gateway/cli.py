"""`mixpilot`: every command-line entry point.

mixpilot mix SONG -o OUTDIR      the embedded pipeline (no servers)
mixpilot analyze SONG [--json]   print the analysis
mixpilot serve                   gateway + all stages in one process (in-memory bus, SQLite)
mixpilot generate --genre G --seed N -o DIR   a generated multitrack song with ground truth
mixpilot train --model NAME      train one mix model on generated songs (weights + plot)
mixpilot evaluate                the models against the baselines on held-out songs
mixpilot keys create --tenant T  an API key for tenant T (shown once); keys list, keys revoke ID
mixpilot triton-repo DIR         the Triton model repository of the three models
mixpilot triton                  a local Triton server on that repository (development)
mixpilot triton-check HOST:PORT  a Triton server's models against local inference (parity)
mixpilot analyzer|predictor|renderer|gateway   one distributed service (env: MIXPILOT_*)
mixpilot healthcheck ROLE        exit 0 if the service of ROLE here is ready (containers)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from services.common.errors import InvalidParameterError, MixPilotError
from services.common.settings import load_settings

TARGET_PRESETS = {"streaming": -14.0, "apple": -16.0, "ebu": -23.0}


def _target(value: str) -> float:
    if value in TARGET_PRESETS:
        return TARGET_PRESETS[value]
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LUFS or one of {', '.join(TARGET_PRESETS)}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mixpilot", description="AI mixing and mastering.")
    sub = ap.add_subparsers(dest="command", required=True)

    mix = sub.add_parser("mix", help="mix and master a song in this process")
    mix.add_argument("song", type=Path)
    mix.add_argument("-o", "--outdir", type=Path, required=True)
    mix.add_argument(
        "--target-lufs",
        type=_target,
        default=None,
        help="integrated loudness target: LUFS or streaming|apple|ebu (default -14)",
    )
    mix.add_argument("--genre", choices=["pop", "rock", "electronic", "jazz", "ballad"])
    mix.add_argument(
        "--intensity",
        type=float,
        default=100.0,
        metavar="PCT",
        help="0-100: how far the mix departs from neutral (default 100)",
    )
    mix.add_argument("--quiet", action="store_true", help="no progress bar")

    an = sub.add_parser("analyze", help="print the musical analysis of a song")
    an.add_argument("song", type=Path)
    an.add_argument("--json", action="store_true", help="the analysis object as JSON")

    gen = sub.add_parser(
        "generate", help="render a generated multitrack song with its ground truth (songgen)"
    )
    gen.add_argument(
        "--genre", required=True, help="pop, rock, electronic, jazz or ballad"
    )  # validated by the generator, so a bad genre is one line, like every other error
    gen.add_argument("--seed", type=int, required=True, help="same seed, same audio")
    gen.add_argument("-o", "--outdir", type=Path, required=True)
    gen.add_argument("--key", default=None, help='e.g. "A minor", "F# major" (default: seeded)')
    gen.add_argument("--tempo", type=float, default=None, help="BPM (default: seeded)")
    gen.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    gen.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    from services.predictor.training.commands import add_evaluate_arguments, add_train_arguments

    add_train_arguments(sub.add_parser("train", help="train one mix model on generated songs"))
    add_evaluate_arguments(
        sub.add_parser("evaluate", help="score the mix models on held-out generated songs")
    )

    from services.analyzer import commands as analyzer_commands

    analyzer_commands.add_train_arguments(
        sub.add_parser("train-analyzer", help="train the analyzer's models on generated songs")
    )
    analyzer_commands.add_evaluate_arguments(
        sub.add_parser(
            "evaluate-analysis",
            help="score the analysis on held-out labelled songs against plain librosa",
        )
    )

    from services.predictor import triton_commands

    triton_commands.add_repository_arguments(
        sub.add_parser("triton-repo", help="write the Triton model repository of the mix models")
    )
    triton_commands.add_check_arguments(
        sub.add_parser("triton-check", help="compare a Triton server's models with local inference")
    )
    triton_commands.add_server_arguments(
        sub.add_parser("triton", help="run a local Triton server with the mix models")
    )

    keys = sub.add_parser("keys", help="API keys of tenants (in MIXPILOT_DATABASE_URL)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="a new key for a tenant (created if new)")
    create.add_argument("--tenant", required=True, help="tenant name: a-z, 0-9, '.', '_', '-'")
    create.add_argument("--label", default="", help="what the key is for (shown in keys list)")
    create.add_argument(
        "--plan", default=None, help="plan of a new tenant: free, standard (default), label"
    )
    listing = keys_sub.add_parser("list", help="keys and whether they are revoked")
    listing.add_argument("--tenant", help="only this tenant's keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once (by its id)")
    revoke.add_argument("key_id", help="the 12 hex characters after mpk_")
    tenants = sub.add_parser("tenants", help="tenants and their plans")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    tenants_sub.add_parser("list", help="every tenant and its plan")
    set_plan = tenants_sub.add_parser("set-plan", help="move a tenant to a plan")
    set_plan.add_argument("tenant")
    set_plan.add_argument("plan", help="free, standard or label")

    sub.add_parser("serve", help="gateway and all stages in one process")
    health = sub.add_parser(
        "healthcheck", help="exit 0 if this machine's service of ROLE is ready (containers)"
    )
    health.add_argument("role", choices=["analyzer", "predictor", "renderer", "gateway"])
    for role in ("analyzer", "predictor", "renderer", "gateway"):
        sub.add_parser(role, help=f"run the {role} service (configured by MIXPILOT_* variables)")
    return ap


def _mix(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gateway.embedded import mix_file

    settings = load_settings()
    target = settings.target_lufs if args.target_lufs is None else args.target_lufs
    if not -40.0 <= target <= -5.0:
        raise InvalidParameterError("--target-lufs must be between -40 and -5")
    bar = tqdm(
        total=100,
        disable=args.quiet,
        unit="%",
        file=sys.stderr,
        bar_format="{desc:<28} {bar} {n:.0f}% [{elapsed}]",
    )

    def progress(what: str, fraction: float) -> None:
        bar.set_description_str(what)
        bar.update(100 * fraction - bar.n)

    try:
        report = mix_file(
            args.song,
            args.outdir,
            target_lufs=target,
            ceiling_dbtp=settings.true_peak_ceiling_dbtp,
            max_duration_s=settings.max_duration_s,
            genre=args.genre,
            intensity_pct=args.intensity,
            render_workers=settings.render_workers,
            progress=progress,
        )
    finally:
        bar.close()
    a = report["analysis"]
    print(
        f"{args.song.name}: {a['tempo_bpm']:.1f} BPM, {a['key']}, {a['genre']}, "
        f"{a['loudness_lufs']:.1f} LUFS"
    )
    for name, v in report["versions"].items():
        print(
            f"  {name:<18} {v['loudness_lufs']:6.1f} LUFS  {v['true_peak_dbtp']:5.1f} dBTP  "
            f"{args.outdir / v['file']}"
        )
    print(
        f"  report             {args.outdir / 'report.json'}  "
        f"({report['timings']['total_s']:.1f} s)"
    )
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from gateway.embedded import analyze_file
    from services.common.jobs import to_dict

    settings = load_settings()
    analysis = to_dict(analyze_file(args.song, max_duration_s=settings.max_duration_s))
    if args.json:
        print(json.dumps(analysis, indent=2))
    else:
        for k in (
            "duration_s",
            "sample_rate",
            "channels",
            "tempo_bpm",
            "meter",
            "key",
            "genre",
            "loudness_lufs",
            "true_peak_dbtp",
            "energy",
            "valence",
            "danceability",
            "stereo_width",
            "compression_style",
            "eq_character",
            "reverb_style",
        ):
            v = analysis.get(k)
            print(f"{k:<18} {v:.2f}" if isinstance(v, float) else f"{k:<18} {v}")
        print("(all fields: --json; definitions: docs/analysis.md)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from services.predictor.songgen import generate_song, write_song

    settings = load_settings()
    started = time.perf_counter()
    bars: list[tqdm] = []  # opened on the first progress report, after the arguments are checked

    def progress(what: str, fraction: float) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=100,
                    disable=args.quiet,
                    unit="%",
                    file=sys.stderr,
                    bar_format="{desc:<28} {bar} {n:.0f}% [{elapsed}]",
                )
            )
        bars[0].set_description_str(what)
        bars[0].update(100 * fraction - bars[0].n)

    try:
        song = generate_song(
            args.genre,
            args.seed,
            key=args.key,
            tempo_bpm=args.tempo,
            duration_s=args.duration,
            sample_rate=args.sample_rate,
            soundfont=settings.soundfont,
            progress=progress,
        )
    finally:
        for b in bars:
            b.close()
    write_song(song, args.outdir)
    t = song.truth
    print(
        f"{t['genre']} seed {t['seed']}: {t['tempo_bpm']:g} BPM, {t['key']}, "
        f"{t['time_signature']}, {t['duration_s']:g} s, {len(t['stems'])} stems "
        f"({', '.join(t['stems'])}), {t['mix']['loudness_lufs']:.1f} LUFS -> {args.outdir} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return 0


def _accounts(args: argparse.Namespace) -> int:
    from gateway.accounts import Accounts
    from gateway.plans import DEFAULT_PLAN, PLANS
    from gateway.store import JobStore

    accounts = Accounts(JobStore(load_settings().database_url).engine)
    if args.command == "tenants":
        if args.tenants_command == "set-plan":
            accounts.set_plan(args.tenant, args.plan)
            print(f"tenant {args.tenant}: plan {args.plan} {PLANS[args.plan].limits()}")
        else:
            for tenant, plan in accounts.tenants():
                print(f"{tenant}  {plan}")
        return 0
    if args.keys_command == "create":
        key, info = accounts.create_key(
            args.tenant, label=args.label, plan=args.plan or DEFAULT_PLAN
        )
        print(key)
        print(
            f"key {info.key_id} for tenant {info.tenant}: shown only now, keep it", file=sys.stderr
        )
    elif args.keys_command == "revoke":
        info = accounts.revoke(args.key_id)
        print(f"key {info.key_id} of tenant {info.tenant} revoked")
    else:
        for info in accounts.keys(args.tenant):
            state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "active"
            print(f"{info.key_id}  {info.tenant}  {state}  {info.label}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "mix":
            return _mix(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "generate":
            return _generate(args)
        if args.command in ("train", "evaluate"):
            from services.predictor.training import commands

            return (
                commands.run_train(args) if args.command == "train" else commands.run_evaluate(args)
            )
        if args.command in ("train-analyzer", "evaluate-analysis"):
            from services.analyzer import commands as analyzer_commands

            if args.command == "train-analyzer":
                return analyzer_commands.run_train(args)
            return analyzer_commands.run_evaluate(args)
        if args.command in ("keys", "tenants"):
            return _accounts(args)
        if args.command in ("triton", "triton-repo", "triton-check"):
            from services.predictor import triton_commands

            if args.command == "triton-check":
                return triton_commands.run_check(args)
            if args.command == "triton":
                return triton_commands.run_server(args)
            return triton_commands.run_repository(args)
        if args.command == "healthcheck":
            from gateway.healthcheck import check

            reason = check(args.role, load_settings())
            if reason is not None:
                print(f"mixpilot healthcheck: {args.role} not ready: {reason}", file=sys.stderr)
                return 1
            return 0
        if args.command == "serve":
            from gateway.runtime import run_serve

            run_serve(load_settings())
            return 0
        if args.command == "gateway":
            from gateway.runtime import run_gateway

            run_gateway(load_settings())
            return 0
        from importlib import import_module

        from services.common.service_runner import service_main

        return service_main(import_module(f"services.{args.command}.service").parts, args.command)
    except MixPilotError as exc:
        print(f"mixpilot {args.command}: error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"mixpilot {args.command}: error: {exc.strerror or exc}: "
            f"{getattr(exc, 'filename', '') or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
