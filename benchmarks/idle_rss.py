"""Idle memory of the studio and the worker (issue 24): only processes that compute import torch.

Starts the studio (`launch.py --no-worker`) and a worker on a fresh database, measures each process's resident
memory idle, runs one tiny SPA run on the mini demo world, and measures the worker's process tree right after
(its stage fork server holds torch) and once the worker has been idle for --stage-server-idle seconds (the fork
server stopped). Run: python benchmarks/idle_rss.py"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.harness import (
    enqueue,
    finished,
    free_port,
    has_torch,
    mini_world,
    rss_mb,
    run_config,
    start,
    start_worker,
    stop,
    tree,
    wait_for,
    wait_listening,
)


def measure(studio, worker) -> dict:
    return {
        "studio MB": rss_mb(tree(studio.pid)),
        "studio imports torch": has_torch(studio.pid),
        "worker MB (with its children)": rss_mb(tree(worker.pid)),
        "worker imports torch": has_torch(worker.pid),
        "worker processes": len(tree(worker.pid)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage-server-idle", type=float, default=10.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spa-idle-"))
    world = mini_world(tmp / "world")
    db, port = tmp / "idle.db", free_port()
    studio = start(["--db", str(db), "--port", str(port), "--no-worker"], tmp / "studio.log")
    worker = start_worker(db, tmp / "worker.log", "--stage-server-idle", str(args.stage_server_idle))
    try:
        wait_listening(port)
        time.sleep(5)
        rows = {"idle, fresh": measure(studio, worker)}
        job_id = enqueue(db, run_config(world, tmp / "run", rounds=1))
        job = wait_for(db, job_id, finished, procs=[worker])
        assert job.status == "done", job.error
        time.sleep(1)
        rows["right after a run"] = measure(studio, worker)
        time.sleep(args.stage_server_idle + 10)  # the worker polls, then waits for the server to exit
        rows[f"idle {args.stage_server_idle:g} s after it"] = measure(studio, worker)
    finally:
        stop(worker)
        stop(studio)
    keys = list(next(iter(rows.values())))
    print(f"`python benchmarks/idle_rss.py --stage-server-idle {args.stage_server_idle:g}`\n")
    print("| when | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for when, row in rows.items():
        cells = [
            f"{v:.0f}" if isinstance(v, float) else ("yes" if v is True else "no" if v is False else str(v))
            for v in row.values()
        ]
        print(f"| {when} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
