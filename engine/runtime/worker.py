"""The job worker: claims queued jobs, runs each stage as a child process in its own process group,
heartbeats, stops (gracefully, then by force), and resumes interrupted jobs from their last stage.

The worker itself never imports torch: it only schedules stages (see engine.runtime.stage_process), so it starts
fast and its memory stays at its idle level whatever the stages load."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine.config import ConfigError
from engine.runtime.doctor import STALE_AFTER_S, diagnose, worker_gone
from engine.runtime.jobs import JOB_KINDS, JobKind, JobRequest, job_kind, launch_command
from engine.runtime.stage_process import EXIT_STOPPED, pid_alive, stage_args, start_stage, stop_stage_server
from storage import Job, Store

RESUMING = "resuming after an interruption"  # the log line of an automatic resume
LOST = -1000  # run_stage: the job was taken from this worker while its stage ran (no exit status is this low)

__all__ = ["JOB_KINDS", "Worker", "WorkerSettings", "pid_alive"]


@dataclass
class WorkerSettings:
    heartbeat_s: float = 2.0
    stale_after_s: float = STALE_AFTER_S  # a heartbeat this old: the worker died or hung, whatever its PID says
    stop_grace_s: float = 20.0  # after SIGTERM, the stage has this long to save and exit before SIGKILL
    max_auto_resumes: int = 3  # an interrupted job is resumed automatically at most this often
    recover_every_s: float = 10.0  # while idle, look this often for jobs of dead workers to resume
    stage_server_idle_s: float = 60.0  # idle this long, the worker stops its fork server (torch's memory back)


def crash_signal(code: int) -> str | None:
    """The signal's name when a stage's exit status says a signal killed it (the worker's own stop signals come
    back as EXIT_STOPPED, a lost job as LOST); None for an exit of its own."""
    if code >= 0 or code == LOST:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def crashed_twice(round: int, stage: str, first: str, second: str) -> str:
    again = "again" if first == second else f"(first {first})"
    return f"[round {round} {stage}] stage {stage} crashed with {second} {again} after one retry: the job fails"


class Worker:
    def __init__(
        self, db: str | Path, name: str | None = None, settings: WorkerSettings | None = None, echo: bool = False
    ):
        # absolute: stage processes must open this very file whatever their working directory
        self.db = str(Path(db).resolve())
        self.store = Store(self.db)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.settings = settings or WorkerSettings()
        self.echo = echo
        self.shutting_down = False

    def install_signal_handlers(self) -> None:
        def handler(*_):
            self.shutting_down = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def check(self) -> None:
        """`launch.py doctor` with repair, before any job is touched: rounds take their job's state, jobs of dead
        workers become interrupted; what cannot be repaired is printed for a person."""
        for finding in diagnose(self.store, repair=True, stale_after_s=self.settings.stale_after_s):
            print(
                f"worker {self.name}: doctor: {finding.check}: {finding.message}"
                + (" [repaired]" if finding.repaired else ""),
                file=sys.stderr,
                flush=True,
            )

    def recover(self) -> list[int]:
        """Jobs left running by a dead worker become interrupted (its process gone, its PID now another process's,
        or its heartbeat stale), then queued again to resume, at most max_auto_resumes times each."""
        for job in self.store.jobs(statuses=("running",)):
            gone = worker_gone(job)
            if gone:
                self.store.interrupt_job(job.id, job.worker, f"interrupted: {gone}")
        self.store.mark_stale_jobs(self.settings.stale_after_s)
        resumed = []
        for job in self.store.jobs(statuses=("interrupted",)):
            if job.auto_resumes >= self.settings.max_auto_resumes:
                self.store.give_up_resuming(job.id, self.settings.max_auto_resumes)
            elif self.store.requeue(
                job.id,
                ("interrupted",),
                cause=f"{self.name}: {RESUMING} ({job.auto_resumes + 1} of {self.settings.max_auto_resumes})",
                auto=True,
            ):
                resumed.append(job.id)
        return resumed

    def serve(self, once: bool = False, poll_s: float = 1.0, job_id: int | None = None) -> None:
        """Run jobs until the queue is empty (once) or forever; with job_id, run only that job."""
        self.install_signal_handlers()
        self.check()
        self.recover()
        last_recover = last_work = time.monotonic()
        while not self.shutting_down:
            job = self.store.claim_job(self.name, os.getpid(), job_id, started=psutil.Process().create_time())
            if job is None:
                if once or job_id is not None:
                    return
                if time.monotonic() - last_recover > self.settings.recover_every_s:
                    self.recover()  # another worker on this database may have died meanwhile
                    last_recover = time.monotonic()
                if time.monotonic() - last_work > self.settings.stage_server_idle_s and stop_stage_server():
                    print(
                        f"worker {self.name}: idle; stage server stopped (its memory returned)",
                        file=sys.stderr,
                        flush=True,
                    )
                time.sleep(poll_s)
                continue
            self.execute(job)
            last_work = time.monotonic()
            if job_id is not None:
                return

    def execute(self, job: Job) -> None:
        """Run a claimed job's stages in order, skipping those already done, until it ends, pauses or is lost."""
        # the job's kind and request, parsed once; an invalid one fails the job before any stage runs
        try:
            kind = job_kind(job)
            request = kind.parse(job)
            stages = kind.plan(request)
        except ConfigError as e:
            self._release(job, "failed", error=str(e), cause=str(e), level="error")
            return
        for k, ref in enumerate(stages):
            last_of_round = k + 1 == len(stages) or stages[k + 1].round != ref.round
            # a stage done before (by a worker that died or stopped) is skipped
            done = self.store.round(job.id, ref.round)
            if done and ref.stage in done.stages_done:
                if kind.keeps_rounds and last_of_round and done.status != "done":  # killed once it was recorded
                    self.store.set_round_status(job.id, ref.round, "done")
                continue
            # between stages: lost, shutting down, stop requested, or the review gate
            if self._interrupted(job, ref.round):
                return
            if ref.stage == "review":
                with self.store.write():  # the job, its round and the reason move together
                    if self._release(
                        job,
                        "paused",
                        stage="review",
                        round=ref.round,
                        cause=f"[round {ref.round} review] paused for review; approve to train",
                    ):
                        self.store.set_round_status(job.id, ref.round, "review")
                return
            # run the stage in its own process group (once more after a crash), then act on its exit status
            code = self.run_stage(job, ref.round, ref.stage, kind, request)
            first = crash_signal(code)
            if first and not self.shutting_down:
                # killed by a signal nobody sent on purpose (SIGSEGV, SIGBUS, the OOM killer's SIGKILL): a crash,
                # not a failure of the stage's own; it is run once more from its start, as a resume would
                where = f"[round {ref.round} {ref.stage}]"
                self.store.log(job.id, f"{where} stage {ref.stage} crashed with {first}; retrying once", "warning")
                if self._interrupted(job, ref.round):  # a stop or a shutdown meanwhile: released already
                    return
                code = self.run_stage(job, ref.round, ref.stage, kind, request)
            if code == LOST:
                self._lost(job)
                return
            if code != 0 and self.shutting_down:
                self._requeue_on_shutdown(job)
                return
            if code == EXIT_STOPPED:
                self._release(job, "stopped", cause=f"[round {ref.round} {ref.stage}] stopped")
                return
            if crash_signal(code):
                reason = crashed_twice(ref.round, ref.stage, first, crash_signal(code))
                self._release(job, "failed", error=reason, cause=reason, level="error")
                return
            if code != 0:
                errors = [e["message"] for e in self.store.events(job.id, limit=50) if e["level"] == "error"]
                error = (errors[-1] if errors else f"stage exited with {code}")[:4000]
                self._release(
                    job,
                    "failed",
                    error=error,
                    cause=f"[round {ref.round} {ref.stage}] failed (exit status {code})",
                    level="error",
                )
                return
            if kind.keeps_rounds and last_of_round:
                self.store.set_round_status(job.id, ref.round, "done")
        self._release(job, "done", progress_done=1, progress_total=1, eta_s=0, cause=f"{job.kind} finished")

    def _release(self, job: Job, status: str, cause: str = "", level: str = "info", **values) -> bool:
        """Hand the job back in `status` (done, failed, stopped, paused, queued), if this worker still holds it;
        the job's rounds follow its state and `cause` is logged, in the same transaction."""
        if status in ("done", "failed", "stopped"):
            ok = self.store.finish_job(job.id, status, worker=self.name, cause=cause, level=level, **values)
        else:
            with self.store.write():
                ok = self.store.update_held_job(job.id, self.name, status=status, pid=None, **values)
                if ok and cause:
                    self.store.log(job.id, cause, level)
        if not ok:
            self._lost(job)
        return ok

    def _lost(self, job: Job) -> None:
        self.store.log(
            job.id,
            f"{self.name} no longer holds this job (taken by another worker or ended from the "
            "studio): it leaves it as it is",
            "warning",
        )

    def _requeue_on_shutdown(self, job: Job) -> None:
        """A planned shutdown is no crash: the job goes straight back to the queue (no interruption, so it
        does not count against max_auto_resumes)."""
        self._release(
            job,
            "queued",
            worker=None,
            level="warning",
            cause=f"{self.name} shut down; the job resumes when a worker starts",
        )

    def _interrupted(self, job: Job, round: int) -> bool:
        """Between stages: a lost job is left alone, a worker shutdown puts it back in the queue, a stop request
        ends it as stopped."""
        now = self.store.job(job.id)
        if now.status != "running" or now.worker != self.name:
            self._lost(job)
            return True
        if self.shutting_down:
            self._requeue_on_shutdown(job)
            return True
        if now.stop_requested:
            self._release(job, "stopped", cause="stopped between stages")
            return True
        return False

    def run_stage(self, job: Job, round: int, stage: str, kind: JobKind, request: JobRequest) -> int:
        """One stage in a child process group; heartbeat while it runs; SIGTERM then SIGKILL on a stop.
        Returns the stage's exit status, EXIT_STOPPED when it was stopped, LOST when the job was taken away."""
        with self.store.write():  # the job's stage and its round's state move together
            if not self.store.update_held_job(
                job.id, self.name, stage=stage, round=round, progress_done=0, progress_total=0, eta_s=None
            ):
                return LOST
            self.store.heartbeat(job.id, self.name)
            if kind.keeps_rounds:
                self.store.set_round_status(job.id, round, "running")
        try:
            command = launch_command(job, stage, stage_args(self.db, job.id, round, stage, self.echo), request)
            child = start_stage(self.db, job.id, round, stage, self.echo, command)
        except (
            OSError,
            ValueError,
        ) as e:  # a missing accelerate config, no fork server: the job fails, not the worker
            self.store.log(job.id, f"[round {round} {stage}] could not start: {type(e).__name__}: {e}", "error")
            return 1
        term_at: float | None = None
        last_beat = time.monotonic()
        lost = False
        while True:
            code = child.wait(timeout=0.5)
            if code is not None:
                break
            now = time.monotonic()
            if now - last_beat >= self.settings.heartbeat_s and not lost:
                lost = not self.store.heartbeat(job.id, self.name)
                last_beat = now
            wants_stop = lost or self.shutting_down or self.store.job(job.id).stop_requested
            if wants_stop and term_at is None:
                if not lost:
                    self.store.log(job.id, f"[round {round} {stage}] stop requested")
                self._signal(child.pid, signal.SIGTERM)
                term_at = now
            elif term_at is not None and now - term_at > self.settings.stop_grace_s:
                self.store.log(job.id, f"[round {round} {stage}] did not stop in time: killed", "warning")
                self._signal(child.pid, signal.SIGKILL)
                code = child.wait(timeout=None)
                break
        if lost:
            return LOST
        if term_at is not None and code != 0:
            return EXIT_STOPPED
        return code

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        """The stage's whole process group; the stage alone if it has not made its group yet."""
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
