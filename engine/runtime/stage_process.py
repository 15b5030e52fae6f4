"""One stage of one job, run as its own process (in its own process group) by the worker, so a stop
really stops it and its memory goes back to the system when it exits.

The worker forks stage processes from a fork server that has imported torch, transformers and the engine
once (`stage_server`), so a stage starts in well under a second instead of paying those imports (10-20 s)
every time. `python -m engine.runtime.stage_process` runs one stage the same way: by hand, or as the command a
multi-GPU training stage is launched with (engine.runtime.distributed)."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the worker imports this module: nothing heavy at import time
    from engine.runtime.jobs import StageCall
    from storage import Store

EXIT_STOPPED = 3
ROOT = Path(__file__).resolve().parents[2]  # where launched stage commands run (`-m engine.runtime.stage_process`)
# imported once, by the fork server
PRELOAD = ["engine.runtime.stage_process", "engine.runtime.stages", "engine.data.export"]


def pid_alive(pid: int | None) -> bool:
    """Whether a process exists and has not exited (a zombie has)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return True


def watch_worker(worker_pid: int) -> None:
    """Exit when the worker that asked for this stage is gone (kill -9): a new worker will redo the stage.
    The worker, not the direct parent: under the fork server the parent is the server, which outlives it.
    psutil's `is_running` compares the start time too, so another process given the worker's PID is no worker."""
    import psutil

    try:
        worker = psutil.Process(worker_pid)
    except psutil.NoSuchProcess:
        os._exit(EXIT_STOPPED)

    def loop():
        while True:
            try:
                if not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE:
                    os._exit(EXIT_STOPPED)
            except psutil.NoSuchProcess:
                os._exit(EXIT_STOPPED)
            time.sleep(1.0)

    threading.Thread(target=loop, daemon=True).start()


# pyarrow (imported by datasets and pandas) loads a jemalloc that starts a background thread when the library is
# loaded; its default memory pool is mimalloc, so that thread only makes the fork server a threaded process,
# and a fork copies one thread of a process whose other threads may hold locks (issue 38: a stage died of SIGSEGV
# at its start once). Off, the server is single-threaded at every fork (tests/test_recovery.py checks it).
SERVER_ENV = {"JE_ARROW_MALLOC_CONF": "background_thread:false"}


def stage_server() -> multiprocessing.context.ForkServerContext:
    """The fork server context (started on first use, one per worker process; it exits with the worker).
    Python 3.11's fork server does not take the worker's sys.path and skips a preload it cannot import
    without a word, so the repository goes on this process's PYTHONPATH (which the server inherits):
    otherwise, for a worker started outside the repository, every stage would pay the imports again.
    SERVER_ENV goes into the same environment, for the same reason."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in paths if p])
    for name, value in SERVER_ENV.items():
        os.environ.setdefault(name, value)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def stop_stage_server() -> bool:
    """Stop this worker's fork server if it runs: it holds torch and the engine (~440 MB) and computes nothing
    itself, so an idle worker gives that memory back; the next stage starts it again (the imports, 10-20 s,
    once). `_stop` is the standard library's own way to stop it (its tests use it); True when one was stopped."""
    from multiprocessing import forkserver

    server = forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is None:
        return False
    server._stop()
    return True


@dataclass
class StageHandle:
    """A running stage: forked from the stage server, or started as a command (training on several GPUs
    under `accelerate launch`). Either way `pid` leads the stage's process group."""

    pid: int
    process: multiprocessing.Process | subprocess.Popen

    def wait(self, timeout: float | None) -> int | None:
        """The exit status once the stage has ended, waiting `timeout` seconds at most; None while it runs
        (negative: killed by that signal)."""
        if isinstance(self.process, subprocess.Popen):
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        self.process.join(timeout)
        return self.process.exitcode


def stage_args(db: str, job_id: int, round: int, stage: str, echo: bool = False) -> list[str]:
    """The command-line arguments of `main` for one stage, watched by this (the worker's) process."""
    return [
        "--db",
        db,
        "--job",
        str(job_id),
        "--round",
        str(round),
        "--stage",
        stage,
        "--worker-pid",
        str(os.getpid()),
    ] + (["--echo"] if echo else [])


def start_stage(
    db: str, job_id: int, round: int, stage: str, echo: bool = False, command: list[str] | None = None
) -> StageHandle:
    """Fork a stage process from the fork server, or run `command` (built around `stage_args`); the stage
    leads its own session (process group) either way."""
    if command:
        proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        return StageHandle(proc.pid, proc)
    forked = stage_server().Process(
        target=child_main,
        args=(db, job_id, round, stage, echo, os.getpid()),
        name=f"spa-stage-{job_id}-{round}-{stage}",
        daemon=False,
    )
    forked.start()
    return StageHandle(forked.pid, forked)


def child_main(db: str, job_id: int, round: int, stage: str, echo: bool, worker_pid: int) -> None:
    os.setsid()  # its own process group: a stop signals the stage and anything it started
    faulthandler.enable()  # a crash (SIGSEGV, SIGBUS) prints every thread's Python stack to the worker's stderr
    os.chdir(ROOT)  # where every stage runs, forked or launched: relative paths mean the same in all of them
    watch_worker(worker_pid)
    sys.exit(run(db, job_id, round, stage, echo))


def run(db: str, job_id: int, round: int, stage: str, echo: bool = False) -> int:
    """Run one stage of a job and record it done; the exit status for the worker. Under a multi-process
    launch every rank runs this; rank 0 alone logs and records the stage done, after every rank has finished."""
    from engine.runtime.context import StopFlag, Stopped
    from engine.runtime.distributed import Ranks, barrier, init_process_group, leave_process_group
    from engine.runtime.jobs import StageCall, job_kind
    from storage import Store

    # the job, this process's rank, a stop flag for SIGTERM and the job's log for library warnings
    ranks = Ranks.from_env()
    stop = StopFlag()
    stop.install_signal_handler()
    store = Store(db)
    job = store.job(job_id)
    where = f"[round {round} {stage}]" + ("" if ranks.is_main else f" [rank {ranks.rank}]")
    handler = capture_library_warnings(store, job_id, where)

    def say(message: str, level: str = "info", every_rank: bool = False) -> None:
        if not (ranks.is_main or every_rank):
            return
        store.log(job_id, f"{where} {message}", level)
        if echo:
            print(f"{where} {message}", flush=True)

    try:
        init_process_group(ranks)
        say("started")
        # parse the job's request once and run the stage through its kind's entry point
        kind = job_kind(job)
        kind.run_stage(StageCall(store, job, kind.parse(job), round, stage, stop, ranks, echo, say))
        # record it done once every rank's share is
        barrier(ranks)
        if ranks.is_main:
            store.stage_done(job.id, round, stage)
        say("done")
        return 0
    except Stopped:
        say("stopped", "warning")
        return EXIT_STOPPED
    except Exception as e:  # the traceback for whoever debugs it; the last error line is the job's error
        store.log(job_id, traceback.format_exc(), "debug")
        if echo:
            traceback.print_exc()
        say(f"failed: {type(e).__name__}: {e}", "error", every_rank=True)
        return 1
    finally:
        release_library_warnings(handler)
        leave_process_group()
        store.close()


def run_spa_stage(call: StageCall) -> None:
    """A run's stage (engine.runtime.stages) on its RunConfig."""
    from engine.runtime.context import StageContext
    from engine.runtime.stages import run_stage

    run_stage(
        StageContext(
            call.store,
            call.job.id,
            call.job.project_id,
            call.request,
            call.round,
            call.stage,
            stop=call.stop,
            echo=call.echo,
            ranks=call.ranks,
        )
    )


def run_text_setup_stage(call: StageCall) -> None:
    """A text world setup job's stage, with its progress on the job row."""
    from engine.runtime.context import JobProgress
    from engine.runtime.text_setup import run_text_setup

    progress = JobProgress(call.store, call.job.id, 0, call.stage, call.stop)
    run_text_setup(call.store, call.job, call.request, call.stage, progress, call.say)


def run_seed_answers_stage(call: StageCall) -> None:
    """A seed-answers job's stage: sample answers for the seed prompts, with its progress on the job row."""
    from engine.runtime.context import JobProgress
    from engine.runtime.seed_answers import run_seed_answers

    progress = JobProgress(call.store, call.job.id, 0, call.stage, call.stop)
    run_seed_answers(call.store, call.job, call.request, call.stage, progress, call.say)


def run_judge_check_stage(call: StageCall) -> None:
    """A judge-check job's stage: cross-fit the project's labelled pairs, with its progress on the job row."""
    from engine.runtime.context import JobProgress
    from engine.runtime.judge_check import run_judge_check

    progress = JobProgress(call.store, call.job.id, 0, call.stage, call.stop)
    run_judge_check(call.store, call.job, call.request, progress, call.say)


class JobLogHandler(logging.Handler):
    """Library warnings (PEFT's missing or unexpected adapter keys, transformers' load reports) into the job's
    log, where the person running the job sees them, instead of a stage process's stderr that nobody reads."""

    def __init__(self, store: Store, job_id: int, where: str):
        super().__init__(logging.WARNING)
        self.store, self.job_id, self.where = store, job_id, where

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip()
            if record.name == "py.warnings":  # "file:line: Category: message" as warnings.formatwarning wrote it
                text = text.splitlines()[0]
            self.store.log(
                self.job_id,
                f"{self.where} {record.name}: {text}",
                "warning" if record.levelno < logging.ERROR else "error",
            )
        except Exception:  # a log line must never fail the stage
            self.handleError(record)


LIBRARY_LOGGERS = ("", "transformers")  # transformers' loggers do not propagate to the root


def capture_library_warnings(store: Store, job_id: int, where: str) -> JobLogHandler:
    """Route `warnings.warn` (logging.captureWarnings) and warning-level log records into the job's log until
    `release_library_warnings`."""
    handler = JobLogHandler(store, job_id, where)
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def release_library_warnings(handler: JobLogHandler) -> None:
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    logging.captureWarnings(False)


def run_export(call: StageCall) -> None:
    """An export job: `engine.data.export.export` with its progress on the job row and a stop between steps."""
    from engine.data.export import export
    from engine.runtime.context import JobProgress

    req = call.request
    progress = JobProgress(call.store, call.job.id, 0, call.stage, call.stop)
    steps: list[str] = []

    def report(step: str, done: int, total: int) -> None:
        if not steps or steps[-1] != step:
            steps.append(step)
            call.say(step)
        progress(done, total)

    progress(0, 1, force=True)
    out = export(call.store.path, req, report)
    progress(1, 1, force=True)
    call.say(f"exported {req.what} of project {req.project!r} to {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run one stage of a job by hand")
    p.add_argument("--db", required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--echo", action="store_true")
    p.add_argument("--worker-pid", type=int, default=None, help="exit when this process (the worker) is gone")
    args = p.parse_args(argv)
    if args.worker_pid:
        watch_worker(args.worker_pid)
    return run(args.db, args.job, args.round, args.stage, args.echo)


if __name__ == "__main__":
    sys.exit(main())
