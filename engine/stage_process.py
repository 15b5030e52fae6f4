"""One stage of one job, run as its own process (in its own process group) by the worker, so a stop
really stops it and its memory goes back to the system when it exits."""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback

EXIT_STOPPED = 3


def watch_parent(parent: int) -> None:
    """Exit when the worker that started us is gone (kill -9): a new worker will redo this stage."""
    def loop():
        while True:
            if os.getppid() != parent:
                os._exit(EXIT_STOPPED)
            time.sleep(1.0)
    threading.Thread(target=loop, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--echo", action="store_true")
    args = p.parse_args(argv)
    watch_parent(os.getppid())

    from engine.config import parse_config
    from engine.rounds import run_stage
    from engine.runtime import StageContext, Stopped
    from storage import Store

    store = Store(args.db)
    job = store.job(args.job)
    cfg = parse_config(job.config_yaml, f"job {job.id} configuration")
    ctx = StageContext(store, job.id, job.project_id, cfg, args.round, args.stage, echo=args.echo)
    ctx.stop.install_signal_handler()
    try:
        ctx.log("started")
        run_stage(ctx)
        store.stage_done(job.id, args.round, args.stage)
        ctx.log("done")
        return 0
    except Stopped:
        ctx.log("stopped", "warning")
        return EXIT_STOPPED
    except Exception as e:
        ctx.log(f"failed: {type(e).__name__}: {e}\n{traceback.format_exc()}", "error")
        return 1


if __name__ == "__main__":
    sys.exit(main())
