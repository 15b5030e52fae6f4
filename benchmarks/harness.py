"""What the reliability benchmarks and the worker tests (tests/test_jobs.py) share: a mini demo world, tiny run
configurations, `launch.py` processes (workers, the studio) started and killed for real, and reading back what they
wrote. No mocks: the figures come from real processes, a real SQLite file and real training."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from engine.config import parse_config
from storage import Job, Store

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
PROJECT = "bench"


def mini_world(folder: Path):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(folder, size=WorldSize.mini(), progress=lambda *a: None)


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, section by section (train={"micro_batch_size": 4} keeps train's other keys)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_config(world, out_dir: Path, **over) -> str:
    """A tiny SPA run on the mini world: seed DPO, `rounds` rounds of 16 prompts (absolute paths: the workers run
    elsewhere), validated."""
    base = {
        "project": PROJECT,
        "model": str(world.model_dir),
        "seed_data": str(world.seed_file),
        "prompt_pool": str(world.pool_file),
        "eval_data": str(world.eval_file),
        "rounds": 2,
        "prompts_per_round": [16, 16, 16],
        "learning_rate": 5e-4,
        "epochs": 1,
        "round_epochs": 1,
        "batch_size": 8,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "generation": {"backend": "hf", "max_new_tokens": 8, "batch_size": 16},
        "judge": {"batch_size": 16},
        "train": {"micro_batch_size": 8},
        "eval": {"max_prompts": 4},
        "output_dir": str(out_dir),
        "seed": 1,
        "device": "cpu",
    }
    text = yaml.safe_dump(merge(base, over), sort_keys=False)
    parse_config(text, "run_config")
    return text


def enqueue(db: Path, config_yaml: str, kind: str = "run", project: str = PROJECT) -> int:
    store = Store(db)
    try:
        return store.enqueue(Job(project_id=store.ensure_project(project).id, kind=kind, config_yaml=config_yaml))
    finally:
        store.close()


def start(args: list[str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """`python launch.py ARGS` with its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd, env=ENV, stdout=out, stderr=subprocess.STDOUT
        )


def start_worker(db: Path, log: Path, *extra: str, cwd: Path = ROOT) -> subprocess.Popen:
    return start(["worker", "--db", str(db), "--poll", "0.2", *extra], log, cwd)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tree(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *descendants(pid)]
    except psutil.NoSuchProcess:
        return []


def kill_all(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 a process and everything it started (its stage processes, its fork server)."""
    procs = tree(proc.pid)
    kill_all(procs)
    proc.wait()
    psutil.wait_procs(procs, timeout=10)


def stop(proc: subprocess.Popen, grace_s: float = 45) -> None:
    """SIGTERM and `grace_s` to end, else kill -9; whatever it started and left behind is killed after it."""
    if proc.poll() is None:
        procs = descendants(proc.pid)
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
        kill_all(procs)


def rss_mb(pids: list[psutil.Process]) -> float:
    total = 0
    for p in pids:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def has_torch(pid: int) -> bool:
    """Whether a process has torch's library mapped (imported torch)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def wait_for(
    db: Path,
    job_id: int,
    predicate,
    what: str = "the state waited for",
    timeout: float = 600,
    procs: list[subprocess.Popen] = (),
) -> Job:
    """Poll the job row until `predicate(job)`; TimeoutError with the job's state and log tail when `timeout` passes
    or one of `procs` (the workers) exits first."""
    store = Store(db)
    try:
        deadline = time.monotonic() + timeout
        while True:
            job = store.job(job_id)
            if predicate(job):
                return job
            dead = [p.pid for p in procs if p.poll() is not None]
            if time.monotonic() > deadline or dead:
                tail = "\n".join(e["message"][:300] for e in store.events(job_id, limit=15))
                raise TimeoutError(
                    f"job {job_id} never got {what} (status {job.status}, round {job.round} stage "
                    f"{job.stage}, {job.progress_done}/{job.progress_total}; workers exited: {dead}):"
                    f"\n{tail}"
                )
            time.sleep(0.05)
    finally:
        store.close()


def finished(job: Job) -> bool:
    """Done, failed, stopped or paused, or interrupted for good. A worker starting up marks a dead worker's job
    interrupted and queues it again a moment later: until automatic resume gives up (and says so in the job's
    error), interrupted is on the way back to the queue."""
    if job.status == "interrupted":
        return bool(job.error)
    return job.status not in ("queued", "running")


def integrity_ok(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {port}")
