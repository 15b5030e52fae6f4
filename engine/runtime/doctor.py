"""`launch.py doctor`: is the database whole and does it agree with itself and with the disk? SQLite's integrity
check, rounds whose state contradicts their job's, artifacts of missing projects or jobs, running jobs without a
live worker, and files the database names that are gone. The worker runs it (with repair) when it starts."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from storage import Job, Store

STALE_AFTER_S = 60.0  # a heartbeat older than this means the worker died or hung, whatever its PID says
SAME_PROCESS_S = 0.5  # start times closer than this are one process (psutil reads them to the clock tick)

ROUND_STATE_FOR_JOB = {"done": "done", "stopped": "stopped", "failed": "failed"}  # else: interrupted


@dataclass
class Finding:
    check: str  # integrity | round | artifact | worker | file
    message: str
    repaired: bool = False


def diagnose(store: Store, repair: bool = False, stale_after_s: float = STALE_AFTER_S) -> list[Finding]:
    """Every inconsistency found. With `repair`, what can be put right without losing anything is: rounds take
    their job's state and jobs of dead workers become interrupted (resumable). Nothing is deleted."""
    found = [Finding("integrity", p) for p in store.integrity_problems()]
    for r in store.rounds_out_of_step():
        where = f"job {r['job_id']} round {r['round']} is {r['status']}"
        if r["job_status"] is None:
            found.append(Finding("round", f"{where} but the job does not exist"))
            continue
        state = ROUND_STATE_FOR_JOB.get(r["job_status"], "interrupted")
        if repair:
            store.set_round_status(r["job_id"], r["round"], state)
            store.log(
                r["job_id"],
                f"doctor: round {r['round']} was {r['status']} while the job was {r['job_status']}; now {state}",
                "warning",
            )
        found.append(Finding("round", f"{where} while the job is {r['job_status']} (should be {state})", repair))
    for a in store.orphaned_artifacts():
        found.append(Finding("artifact", f"artifact {a.id} ({a.kind}, {a.path}) belongs to a missing project or job"))
    found += _dead_workers(store, repair, stale_after_s)
    found += _missing_files(store)
    return found


def worker_gone(job: Job) -> str | None:
    """Why a running job's worker is known to be gone, judged on this host (psutil, as `Process.is_running`
    does: the PID and the process's start time); None when it lives or ran on another host, where only its
    heartbeat can tell."""
    host, _, pid = (job.worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        process = psutil.Process(int(pid))
        started = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return f"its worker {job.worker} has exited"
    except psutil.NoSuchProcess:
        return f"its worker {job.worker} has exited"
    except psutil.AccessDenied:
        return None
    if job.worker_started is not None and abs(started - job.worker_started) > SAME_PROCESS_S:
        return (
            f"its worker {job.worker} has exited and PID {pid} now belongs to another process "
            f"({process.name()}, started {started - job.worker_started:+.0f} s after the worker)"
        )
    return None


def _dead_workers(store: Store, repair: bool, stale_after_s: float) -> list[Finding]:
    found = []
    stale = store.stale_jobs(stale_after_s)
    for job in store.jobs(statuses=("running",)):
        gone = worker_gone(job) or stale.get(job.id)
        if gone:
            repaired = repair and store.interrupt_job(job.id, job.worker, f"interrupted (doctor): {gone}")
            found.append(Finding("worker", f"job {job.id} is running without a live worker: {gone}", repaired))
    return found


def _missing_files(store: Store) -> list[Finding]:
    found = []
    for a in store.all_artifacts():
        root = Path(a.path)
        if not root.exists():
            found.append(
                Finding("file", f"artifact {a.id} ({a.kind} of job {a.job_id} round {a.round}): {root} is missing")
            )
            continue
        for name in sorted(a.meta.get("sha256", {})):
            if not (root / name).is_file():
                found.append(
                    Finding(
                        "file",
                        f"artifact {a.id} ({a.kind} of job {a.job_id} round {a.round}): {root / name} is missing",
                    )
                )
    return found


def main(db: str, repair: bool = False) -> int:
    """Print the findings; exit status 0 when there are none."""
    store = Store(db)
    try:
        found = diagnose(store, repair)
    finally:
        store.close()
    for f in found:
        print(f"{f.check}: {f.message}" + (" [repaired]" if f.repaired else ""))
    print(f"doctor: {db}: " + (f"{len(found)} finding(s)" if found else "consistent"), file=sys.stderr)
    return 1 if found else 0
