"""Recovery without worker processes: liveness that survives PID reuse, stale heartbeats, the automatic-resume
limit, and job and round states that move together. Each test writes the rows a dead or live worker leaves."""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone

import psutil
import pytest

from engine.worker import Worker, WorkerSettings
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
        "other:1: resuming after an interruption (1 of 2)", "other:1: resuming after an interruption (2 of 2)"]
    assert Worker(store.path, name="other:1", settings=WorkerSettings(max_auto_resumes=3)).recover() == [job_id]
    assert store.requeue(job_id, ("queued",)) and store.job(job_id).error == ""  # a resume clears the reason
