"""Recovery without worker processes: liveness that survives PID reuse, stale heartbeats, the automatic-resume
limit, and job and round states that move together. Each test writes the rows a dead or live worker leaves."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from engine.runtime.worker import Worker, WorkerSettings
from storage import Job, Store

ME = f"{socket.gethostname()}:{os.getpid()}"  # a worker name whose PID is alive: this test process


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "r.db")
    yield s
    s.close()


def running_job(store: Store, worker: str = ME, started: float | None = None, beat_age_s: float = 0.0) -> int:
    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run"))
    store.claim_job(worker, int(worker.rpartition(":")[2]), job_id, started=started)
    beat = datetime.now(timezone.utc) - timedelta(seconds=beat_age_s)
    store.update_job(job_id, heartbeat_at=beat.isoformat())
    return job_id


def messages(store: Store, job_id: int) -> list[str]:
    return [e["message"] for e in store.events(job_id, limit=1000)]


def test_a_reused_pid_is_not_taken_for_the_dead_worker(store):
    # the dead worker started an hour before the process that now has its PID (this one); its heartbeat is fresh
    job_id = running_job(store, started=psutil.Process().create_time() - 3600)
    assert Worker(store.path, name="other:1").recover() == [job_id]
    assert store.job(job_id).status == "queued"
    assert any("now belongs to another process" in m for m in messages(store, job_id))


def test_a_stale_heartbeat_interrupts_the_job_whatever_the_pid_says(store):
    job_id = running_job(store, started=psutil.Process().create_time(), beat_age_s=120)
    settings = WorkerSettings(stale_after_s=60)
    assert Worker(store.path, name="other:1", settings=settings).recover() == [job_id]
    log = messages(store, job_id)
    assert any(f"the heartbeat of {ME} last beat 12" in m and "stale after 60 s" in m for m in log), log


def test_a_live_worker_with_a_fresh_heartbeat_keeps_its_job(store):
    job_id = running_job(store, started=psutil.Process().create_time(), beat_age_s=5)
    assert Worker(store.path, name="other:1").recover() == []
    assert store.job(job_id).status == "running"


def test_automatic_resume_gives_up_after_the_limit_and_says_so_once(store):
    job_id = running_job(store, worker="elsewhere:7", beat_age_s=600)
    worker = Worker(store.path, name="other:1", settings=WorkerSettings(max_auto_resumes=2))
    for attempt in (1, 2):
        assert worker.recover() == [job_id]
        store.claim_job("elsewhere:7", 7, job_id)
        store.update_job(job_id, heartbeat_at="2000-01-01T00:00:00+00:00")  # dies again
    assert worker.recover() == [] and worker.recover() == []
    job = store.job(job_id)
    assert (job.status, job.auto_resumes) == ("interrupted", 2)
    assert job.error.startswith("automatic resume gave up: interrupted again after 2 automatic resumes")
    log = messages(store, job_id)
    assert sum("automatic resume gave up" in m for m in log) == 1
    assert [m for m in log if "resuming after an interruption" in m] == [
        "other:1: resuming after an interruption (1 of 2)",
        "other:1: resuming after an interruption (2 of 2)",
    ]
    assert Worker(store.path, name="other:1", settings=WorkerSettings(max_auto_resumes=3)).recover() == [job_id]
    assert store.requeue(job_id, ("queued",)) and store.job(job_id).error == ""  # a resume clears the reason


RUN_YAML = "project: p\nmodel: m\nrounds: 1\nprompt_pool: pool.jsonl\nseed_data: seed.jsonl\n"
ALL_STAGES = ["prepare", "seed", "evaluate", "generate", "judge", "train", "evaluate", "finalize"]


def test_a_job_killed_in_finalisation_ends_with_every_round_done(store):
    """Killed after finalize was recorded, before the worker marked the round done: the next worker's doctor
    interrupts the job, recover resumes it, every stage is skipped and the round ends done with its job."""
    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run", config_yaml=RUN_YAML))
    store.claim_job("elsewhere:7", 7, job_id)
    for round_index, stages in ((0, ALL_STAGES[:3]), (1, ALL_STAGES[3:])):
        store.set_round_status(job_id, round_index, "running")
        for stage in stages:
            store.stage_done(job_id, round_index, stage)
    store.set_round_status(job_id, 0, "done")
    store.update_job(job_id, heartbeat_at="2000-01-01T00:00:00+00:00")  # the worker is dead
    worker = Worker(store.path, name="other:1")
    worker.check()
    assert store.round(job_id, 1).status == "interrupted"  # with its job, in one transaction
    worker.recover()
    worker.execute(store.claim_job(worker.name, os.getpid(), job_id))
    assert store.job(job_id).status == "done"
    assert [r.status for r in store.rounds(job_id)] == ["done", "done"]


def test_ending_a_job_settles_its_rounds_and_logs_the_cause_together(store):
    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run"))
    store.claim_job("w:1", 1, job_id)
    store.set_round_status(job_id, 0, "done")
    store.set_round_status(job_id, 1, "running")
    assert store.finish_job(job_id, "stopped", worker="w:1", cause="stopped between stages")
    assert [r.status for r in store.rounds(job_id)] == ["done", "stopped"]
    assert store.events(job_id)[-1]["message"] == "stopped between stages"
    assert not store.finish_job(job_id, "done", worker="w:1", cause="x")  # no longer held: nothing written
    assert store.events(job_id)[-1]["message"] == "stopped between stages"
    store.set_round_status(job_id, 1, "review")
    assert store.finish_job(job_id, "stopped", cause="stopped from the studio while paused")
    assert store.round(job_id, 1).status == "stopped"


def test_doctor_finds_and_repairs_rounds_dead_jobs_and_missing_files(store, tmp_path):
    from engine.runtime.doctor import diagnose
    from storage import Artifact

    project = store.ensure_project("p")
    done = store.enqueue(Job(project_id=project.id, kind="run"))
    store.claim_job("w:1", 1, done)
    store.finish_job(done, "done")
    store.set_round_status(done, 2, "running")  # left running by an old finalisation
    dead = running_job(store, worker="elsewhere:9", beat_age_s=300)
    kept = tmp_path / "adapter"
    kept.mkdir()
    (kept / "adapter_model.safetensors").write_bytes(b"x")
    store.add_artifact(
        Artifact(
            project_id=project.id,
            job_id=done,
            round=1,
            kind="adapter",
            path=str(kept),
            meta={"sha256": {"adapter_model.safetensors": "0" * 64, "adapter_config.json": "1"}},
        )
    )
    store.add_artifact(
        Artifact(project_id=project.id, job_id=done, round=2, kind="adapter", path=str(tmp_path / "gone"))
    )
    found = {(f.check, f.message) for f in diagnose(store)}
    assert (("round", f"job {done} round 2 is running while the job is done (should be done)")) in found
    assert any(check == "worker" and f"job {dead} is running without a live worker" in m for check, m in found)
    assert ("file", f"artifact 1 (adapter of job {done} round 1): {kept / 'adapter_config.json'} is missing") in found
    assert ("file", f"artifact 2 (adapter of job {done} round 2): {tmp_path / 'gone'} is missing") in found
    assert len(found) == 4
    assert store.round(done, 2).status == "running" and store.job(dead).status == "running"  # no repair asked
    repaired = diagnose(store, repair=True)
    assert sum(f.repaired for f in repaired) == 2
    assert store.round(done, 2).status == "done" and store.job(dead).status == "interrupted"
    assert {f.check for f in diagnose(store)} == {"file"}  # files are reported, never deleted


def test_doctor_command_reports_integrity_and_exits_nonzero_on_findings(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    db = tmp_path / "d.db"
    Store(db).close()
    ok = subprocess.run(
        [sys.executable, "launch.py", "doctor", "--db", str(db)], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and "consistent" in ok.stderr
    s = Store(db)
    running_job(s, worker="elsewhere:9", beat_age_s=300)
    s.close()
    bad = subprocess.run(
        [sys.executable, "launch.py", "doctor", "--db", str(db)], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1 and "worker: job 1 is running without a live worker" in bad.stdout


def test_an_idle_worker_can_stop_its_stage_server_and_start_it_again():
    """The fork server holds torch (~440 MB) between stages; stop_stage_server gives that memory back."""
    import multiprocessing
    from multiprocessing import forkserver

    from engine.runtime.stage_process import stop_stage_server

    assert not stop_stage_server()  # none running
    multiprocessing.get_context("forkserver")  # the server as a stage starts it, without the heavy preload
    forkserver.set_forkserver_preload([])
    forkserver.ensure_running()
    pid = forkserver._forkserver._forkserver_pid
    assert psutil.pid_exists(pid)
    assert stop_stage_server()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    forkserver.ensure_running()  # the next stage starts a fresh one
    assert forkserver._forkserver._forkserver_pid not in (None, pid)
    assert stop_stage_server()


def test_doctor_leaves_an_approved_review_alone(store):
    from engine.runtime.doctor import diagnose

    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run"))
    store.claim_job("w:1", 1, job_id)
    store.update_held_job(job_id, "w:1", status="paused", round=1)
    store.set_round_status(job_id, 1, "review")
    assert diagnose(store) == []  # paused at its gate
    store.approve_review(job_id, 1)
    assert store.job(job_id).status == "queued" and diagnose(store) == []  # approved, waiting for a worker


def test_the_stage_server_has_one_thread_when_it_forks_a_stage():
    """A fork copies only the forking thread; another thread's locks (an allocator's, OpenMP's pool) stay held in
    the child forever. The server preloads torch, transformers, datasets and the engine, and pyarrow's jemalloc
    starts a thread of its own when loaded unless told not to (stage_process.SERVER_ENV); OpenMP's pool must not
    have started either (no tensor work in the server)."""
    from multiprocessing import forkserver

    from engine.runtime.stage_process import stage_server, stop_stage_server

    stop_stage_server()
    child = stage_server().Process(target=os.getpid)  # starts the server with the stages' preload
    child.start()
    child.join(120)
    assert child.exitcode == 0
    pid = forkserver._forkserver._forkserver_pid
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libtorch_cpu" in maps and "libarrow" in maps  # the preload is in the server
    threads = {t: Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() for t in os.listdir(f"/proc/{pid}/task")}
    assert list(threads) == [str(pid)], threads
    assert stop_stage_server()
