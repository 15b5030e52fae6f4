"""`launch.py run`: a whole run in the foreground, on the same job runtime the studio uses."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from engine.config import ConfigError, load_config
from engine.data.report import audit_estimates, audit_warning, round_table
from engine.runtime.jobs import RUN
from engine.runtime.worker import Worker
from storage import Job, Store


def follow(db: str, job_id: int, done: threading.Event) -> None:
    """Print the job's stage, counts and ETA as they change."""
    store = Store(db)
    last = None
    while not done.is_set():
        job = store.job(job_id)
        if job.stage and job.progress_total:
            eta = f", ETA {job.eta_s:.0f}s" if job.eta_s else ""
            line = f"[round {job.round} {job.stage}] {job.progress_done}/{job.progress_total}{eta}"
            if line != last:
                print(line, flush=True)
                last = line
        done.wait(1.0)
    store.close()


def run_headless(
    config_path: str, db: str | None = None, project: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> int:
    """`overrides`: `key.path=value` on top of the file, validated with it (`launch.py run --set`)."""
    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as e:
        print(f"invalid configuration: {e}", file=sys.stderr)
        return 2
    if project:
        cfg.project = project
    db = db or cfg.db or "spa_studio.db"
    store = Store(db)
    proj = store.ensure_project(cfg.project, model=cfg.model)
    job_id = store.enqueue(Job(project_id=proj.id, kind=RUN, config_yaml=cfg.to_yaml()))
    print(f"run {job_id} of project '{cfg.project}' from {Path(config_path)} (database {db})", flush=True)
    started = time.monotonic()
    done = threading.Event()
    printer = threading.Thread(target=follow, args=(db, job_id, done), daemon=True)
    printer.start()
    try:
        Worker(db, echo=True).serve(job_id=job_id)
    finally:
        done.set()
        printer.join()
    job = store.job(job_id)
    print(f"\nrun {job_id}: {job.status} after {time.monotonic() - started:.0f}s")
    print(round_table(store, job_id))
    warning = audit_warning(audit_estimates(store, job_id))
    if warning:
        print(f"warning: {warning}")
    if job.status == "paused":
        print("paused at the review gate: review in the studio, then approve to continue")
        return 0
    if job.status != "done":
        print(f"error: {job.error}", file=sys.stderr)
        return 1
    return 0
