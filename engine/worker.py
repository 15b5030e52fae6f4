"""The job worker: claims queued jobs, runs each stage as a child process in its own process group,
heartbeats, stops (gracefully, then by force), and resumes interrupted jobs from their last stage."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.config import ConfigError, parse_config
from engine.rounds import plan
from engine.stage_process import EXIT_STOPPED
from storage import Job, Store

ROOT = Path(__file__).resolve().parents[1]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return True


@dataclass
class WorkerSettings:
    heartbeat_s: float = 2.0
    stale_after_s: float = 60.0  # a heartbeat older than this (from another host) means the worker died
    stop_grace_s: float = 20.0  # after SIGTERM, the stage has this long to save and exit before SIGKILL
    max_auto_resumes: int = 3  # an interrupted job is resumed automatically at most this often


class Worker:
    def __init__(self, db: str | Path, name: str | None = None, settings: WorkerSettings | None = None,
                 echo: bool = False):
        self.db = str(db)
        self.store = Store(db)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.settings = settings or WorkerSettings()
        self.echo = echo
        self.shutting_down = False

    def install_signal_handlers(self) -> None:
        def handler(*_):
            self.shutting_down = True
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def recover(self) -> list[int]:
        """Jobs left running by a dead worker become interrupted, then queued again to resume."""
        host = socket.gethostname()
        for job in self.store.jobs(statuses=("running",)):
            worker_host, _, worker_pid = (job.worker or "").rpartition(":")
            if worker_host == host and worker_pid.isdigit() and not pid_alive(int(worker_pid)):
                self.store.update_job(job.id, status="interrupted", pid=None)
        self.store.mark_stale_jobs(self.settings.stale_after_s)
        resumed = []
        for job in self.store.jobs(statuses=("interrupted",)):
            tries = sum("resuming after an interruption" in e["message"] for e in self.store.events(job.id, limit=10_000))
            if tries < self.settings.max_auto_resumes:
                self.store.log(job.id, f"{self.name}: resuming after an interruption")
                self.store.requeue(job.id)
                resumed.append(job.id)
        return resumed

    def serve(self, once: bool = False, poll_s: float = 1.0, job_id: int | None = None) -> None:
        """Run jobs until the queue is empty (once) or forever; with job_id, run only that job."""
        self.install_signal_handlers()
        self.recover()
        while not self.shutting_down:
            job = self.store.claim_job(self.name, os.getpid(), job_id)
            if job is None:
                if once or job_id is not None:
                    return
                time.sleep(poll_s)
                continue
            self.execute(job)
            if job_id is not None:
                return

    def execute(self, job: Job) -> None:
        try:
            cfg = parse_config(job.config_yaml, f"job {job.id} configuration")
        except ConfigError as e:
            self.store.log(job.id, str(e), "error")
            self.store.finish_job(job.id, "failed", str(e))
            return
        self.store.log(job.id, f"claimed by {self.name}")
        stages = plan(cfg)
        for k, ref in enumerate(stages):
            done = self.store.round(job.id, ref.round)
            if done and ref.stage in done.stages_done:
                continue
            if ref.stage == "review":
                self.store.set_round_status(job.id, ref.round, "review")
                self.store.update_job(job.id, status="paused", stage="review", round=ref.round, pid=None)
                self.store.log(job.id, f"[round {ref.round} review] paused for review; approve to train")
                return
            self.store.set_round_status(job.id, ref.round, "running")
            code = self.run_stage(job, ref.round, ref.stage)
            if self.shutting_down and code != 0:
                self.store.update_job(job.id, status="interrupted", pid=None)
                self.store.log(job.id, f"{self.name} shut down; the job resumes when a worker starts", "warning")
                return
            if code == EXIT_STOPPED:
                self.store.set_round_status(job.id, ref.round, "stopped")
                self.store.finish_job(job.id, "stopped")
                return
            if code != 0:
                errors = [e["message"] for e in self.store.events(job.id, limit=50) if e["level"] == "error"]
                self.store.set_round_status(job.id, ref.round, "failed")
                self.store.finish_job(job.id, "failed", (errors[-1] if errors else f"stage exited with {code}")[:4000])
                return
            last_of_round = k + 1 == len(stages) or stages[k + 1].round != ref.round
            if last_of_round:
                self.store.set_round_status(job.id, ref.round, "done")
        self.store.update_job(job.id, progress_done=1, progress_total=1, eta_s=0)
        self.store.finish_job(job.id, "done")
        self.store.log(job.id, "run finished")

    def run_stage(self, job: Job, round: int, stage: str) -> int:
        """One stage in a child process group; heartbeat while it runs; SIGTERM then SIGKILL on a stop."""
        cmd = [sys.executable, "-m", "engine.stage_process", "--db", self.db, "--job", str(job.id),
               "--round", str(round), "--stage", stage] + (["--echo"] if self.echo else [])
        child = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
        self.store.update_job(job.id, stage=stage, round=round, progress_done=0, progress_total=0, eta_s=None)
        term_at: float | None = None
        last_beat = 0.0
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now - last_beat >= self.settings.heartbeat_s:
                self.store.heartbeat(job.id)
                last_beat = now
            wants_stop = self.shutting_down or self.store.job(job.id).stop_requested
            if wants_stop and term_at is None:
                self.store.log(job.id, f"[round {round} {stage}] stop requested")
                self._signal(child, signal.SIGTERM)
                term_at = now
            elif term_at is not None and now - term_at > self.settings.stop_grace_s:
                self.store.log(job.id, f"[round {round} {stage}] did not stop in time: killed", "warning")
                self._signal(child, signal.SIGKILL)
                child.wait()
                return EXIT_STOPPED
        if term_at is not None and code != 0:
            return EXIT_STOPPED
        return code

    @staticmethod
    def _signal(child: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
