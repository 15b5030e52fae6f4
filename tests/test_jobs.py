"""The background engine with real processes (issue 5): `launch.py worker` processes on a mini demo world,
killed with SIGKILL, stopped, resumed, sharing a queue, taking label corrections while they train, and
running export jobs. Nothing here mocks the worker: the tests only write intentions into SQLite (as the
studio does), send signals, and read back what the workers wrote."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
import yaml

from benchmarks.harness import (
    PROJECT,
    ROOT,
    descendants,
    enqueue,
    finished,
    integrity_ok,
    kill_tree,
    mini_world,
    run_config,
    start_worker,
    stop,
    wait_for,
)
from engine.config import ConfigError, parse_config
from storage import Job, Store

RUN_TIMEOUT_S = 240  # one tiny run takes ~15 s on an idle 2-core machine; the shared CI machine is slower
STOP_WITHIN_S = 30  # acceptance: a stop ends the job within 30 s
slow = pytest.mark.slow  # every test that starts worker processes


# --- fixtures and helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return mini_world(tmp_path_factory.mktemp("jobs_world"))


# Training long enough to be caught mid-way (a step of the mini model takes 30-300 ms, by machine and load).
# When the test acts itself (kill, label): 16 pairs, 4 per step, 8 epochs = 32 steps.
SLOW_TRAIN = {"round_epochs": 8, "batch_size": 4, "train": {"micro_batch_size": 4}}
# When a stop goes through the worker (it polls every 0.5 s), training must outlast that by far: 64 steps.
LONG_TRAIN = {"round_epochs": 16, "batch_size": 4, "train": {"micro_batch_size": 4}}


class Workers:
    """`launch.py worker` processes started by one test (or module), each logging to a file; whatever is
    still running at teardown is stopped, and its process tree killed."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, db: Path, *args: str, cwd: Path = ROOT) -> subprocess.Popen:
        proc = start_worker(db, self.tmp / f"worker-{len(self.procs)}.log", *args, cwd=cwd)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)


@pytest.fixture
def workers(tmp_path):
    w = Workers(tmp_path)
    yield w
    w.close()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def settled_rss_mb(pid: int, timeout: float = 60) -> float:
    """A starting process's memory once it has stopped growing (its imports done: 3 s is not enough on a loaded
    machine), at least 3 s after the call."""
    time.sleep(3)
    before, deadline = rss_mb(pid), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = rss_mb(pid)
        if now - before < 1:
            return now
        before = now
    return before


def stage_children(worker_pid: int) -> list[psutil.Process]:
    """The worker's stage processes: children of its fork server that lead their own session."""
    out = []
    for p in descendants(worker_pid):
        try:
            if os.getsid(p.pid) == p.pid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            pass
    return out


def training(round: int):
    """Training steps under way in `round` (not merely its model loading)."""
    return lambda job: (
        job.status == "running"
        and job.stage == "train"
        and job.round == round
        and job.progress_total > 0
        and job.progress_done < job.progress_total
    )


def events(db: Path, job_id: int) -> list[dict]:
    store = Store(db)
    try:
        return store.events(job_id, limit=100_000)
    finally:
        store.close()


def stage_starts(db: Path, job_id: int) -> Counter:
    """How often each (round, stage) of a job was started."""
    found = (re.match(r"\[round (\d+) (\w+)\] started$", e["message"]) for e in events(db, job_id))
    return Counter((int(m.group(1)), m.group(2)) for m in found if m)


def metric_keys(db: Path, job_id: int) -> list[tuple]:
    """(round, stage, name, step) of every metric point the job stored."""
    store = Store(db)
    try:
        return sorted((m.round, m.stage, m.name, m.step) for m in store.metrics(job_id))
    finally:
        store.close()


def metric_values(db: Path, job_id: int, name: str) -> dict[int, float]:
    store = Store(db)
    try:
        return {m.round: m.value for m in store.metrics(job_id, [name])}
    finally:
        store.close()


def pairs_per_round(db: Path, job_id: int) -> dict[int, list[int]]:
    store = Store(db)
    try:
        out: dict[int, list[int]] = {}
        for p in store.pairs(job_id):
            out.setdefault(p.round, []).append(p.example_id)
        return {r: sorted(ids) for r, ids in out.items()}
    finally:
        store.close()


def written(db: Path, job_id: int, round: int) -> int:
    """Pairs the round's generate stage reported writing, summed over its attempts."""
    found = (re.match(rf"\[round {round} generate\] (\d+) pairs written", e["message"]) for e in events(db, job_id))
    return sum(int(m.group(1)) for m in found if m)


def all_stages(config_yaml: str) -> set[tuple[int, str]]:
    from engine.runtime.jobs import plan

    return {(s.round, s.stage) for s in plan(parse_config(config_yaml))}


# --- 1. kill -9 during training of round 2 --------------------------------------------------------------


@slow
def test_a_worker_killed_during_round_2_training_is_resumed_by_the_next_worker(world, tmp_path, workers):
    db = tmp_path / "kill.db"
    reference = enqueue(db, run_config(world, tmp_path / "reference", **SLOW_TRAIN))
    victim_config = run_config(world, tmp_path / "victim", **SLOW_TRAIN)
    victim = enqueue(db, victim_config)
    first = workers.start(db)
    wait_for(db, reference, lambda j: j.status == "done", "done", RUN_TIMEOUT_S, procs=[first])
    wait_for(db, victim, training(2), "round 2 training under way", RUN_TIMEOUT_S, procs=[first])

    assert stage_children(first.pid), "no stage process to kill"
    kill_tree(first)
    assert "train" not in Store(db).round(victim, 2).stages_done, "round 2 training ended before the kill"
    assert Store(db).job(victim).status == "running"  # as a dead worker leaves it: nobody said otherwise

    second = workers.start(db)
    job = wait_for(db, victim, finished, "finished", RUN_TIMEOUT_S, procs=[second])
    assert job.status == "done", job.error
    log = [e["message"] for e in events(db, victim)]
    assert any("resuming after an interruption" in m for m in log)
    starts = stage_starts(db, victim)
    assert starts[(2, "train")] == 2  # killed once, then redone from the start of the stage
    assert {k for k, n in starts.items() if n > 1} == {(2, "train")}  # nothing before it ran again
    assert set(starts) == all_stages(victim_config)
    # the same prompts, and as many pairs, per round as the uninterrupted run with the same seed
    assert pairs_per_round(db, victim) == pairs_per_round(db, reference)
    assert all(len(ids) == len(set(ids)) for ids in pairs_per_round(db, victim).values())
    assert [r.status for r in Store(db).rounds(victim)] == ["done", "done", "done"]
    assert (tmp_path / "victim" / "final" / "config.json").is_file()
    assert integrity_ok(db)
    # the killed attempt's loss points were replaced, not appended: the same series as the uninterrupted run
    series = {job: metric_keys(db, job) for job in (victim, reference)}
    assert series[victim] == series[reference]
    assert Counter(series[victim]).most_common(1)[0][1] == 1
    dropped = "round/dropped_identical"
    assert metric_values(db, victim, dropped) == metric_values(db, reference, dropped)
    assert not (tmp_path / "victim" / "round_2" / "partial").exists()


# --- a module-wide worker for the tests that need no killing ----------------------------------------------


class SharedWorker:
    def __init__(self, db: Path, proc: subprocess.Popen, idle_rss_mb: float):
        self.db, self.proc, self.idle_rss_mb = db, proc, idle_rss_mb

    def wait(self, job_id: int, predicate=finished, what: str = "finished", timeout: float = RUN_TIMEOUT_S) -> Job:
        return wait_for(self.db, job_id, predicate, what, timeout, procs=[self.proc])

    def store(self) -> Store:
        return Store(self.db)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared_worker")
    pool = Workers(tmp)
    db = tmp / "shared.db"
    proc = pool.start(Path(db.name), cwd=tmp)  # started outside the repository, with a relative --db
    yield SharedWorker(db, proc, settled_rss_mb(proc.pid))
    pool.close()


def stop_and_time(shared: SharedWorker, job_id: int) -> tuple[Job, float]:
    store = shared.store()
    store.request_stop(job_id)
    store.close()
    asked = time.monotonic()
    job = shared.wait(job_id, finished, "stopped", timeout=STOP_WITHIN_S + 10)
    return job, time.monotonic() - asked


# --- 2. stop during generation and during training; resume ----------------------------------------------


@slow
def test_a_run_stopped_during_generation_and_training_resumes_to_the_end(world, tmp_path, shared):
    # round 1: 40 prompts, 4 samples each, one sequence per generate call (160 calls), then 60 training steps
    config = run_config(
        world,
        tmp_path / "out",
        prompts_per_round=[40, 16],
        round_epochs=6,
        batch_size=4,
        generation={"samples_per_prompt": 4, "batch_size": 1, "max_new_tokens": 16},
        train={"micro_batch_size": 4},
    )
    job_id = enqueue(shared.db, config)
    shared.wait(
        job_id,
        lambda j: (
            j.stage == "generate" and j.round == 1 and 0 < j.progress_total and j.progress_done < j.progress_total
        ),
        "generating",
    )
    job, took = stop_and_time(shared, job_id)
    assert job.status == "stopped" and took < STOP_WITHIN_S
    assert shared.store().round(job_id, 1).status == "stopped"
    assert "generate" not in shared.store().round(job_id, 1).stages_done

    assert shared.store().requeue(job_id)  # what the studio's resume does
    shared.wait(job_id, training(1), "round 1 training under way")
    job, took = stop_and_time(shared, job_id)
    assert job.status == "stopped" and took < STOP_WITHIN_S
    assert job.stage == "train" and job.round == 1
    assert (tmp_path / "out" / "round_1" / "partial" / "adapter_config.json").is_file()  # partly trained, kept
    assert "train" not in shared.store().round(job_id, 1).stages_done

    assert shared.store().requeue(job_id)
    job = shared.wait(job_id)
    assert job.status == "done", job.error
    starts = stage_starts(shared.db, job_id)
    assert starts[(1, "generate")] == 2 and starts[(1, "train")] == 2
    assert {k for k, n in starts.items() if n > 1} == {(1, "generate"), (1, "train")}
    assert set(starts) == all_stages(config)
    per_round = pairs_per_round(shared.db, job_id)
    assert set(per_round) == {1, 2} and 0 < len(per_round[1]) <= 40 and 0 < len(per_round[2]) <= 16
    # counted from the stored pairs, not from the resumed attempt alone; one loss series; no partial weights left
    assert metric_values(shared.db, job_id, "round/dropped_identical") == {
        1: 40 - len(per_round[1]),
        2: 16 - len(per_round[2]),
    }
    keys = metric_keys(shared.db, job_id)
    assert len(keys) == len(set(keys)) and sum(k[2] == "train/loss" and k[0] == 1 for k in keys) > 0
    assert not (tmp_path / "out" / "round_1" / "partial").exists()
    store = shared.store()
    # four samples under the implicit judge: each stored pair is its best and worst sample, response a first
    # (the judge stage rescores π_init with the shared-prompt pass: equal to float32 rounding, ~1e-7 here)
    rounding = 1e-5
    pairs = store.pairs(job_id)
    assert all(p.reward_a >= p.reward_b - rounding for p in pairs)
    assert all(p.judge_label == "a" for p in pairs if p.reward_a - p.reward_b > rounding)
    assert sum(p.reward_a - p.reward_b > rounding for p in pairs if p.round == 2) > 8
    assert integrity_ok(shared.db)


# --- 5. a stop gives the memory back -------------------------------------------------------------------


@slow
def test_a_stop_releases_the_stage_memory(world, tmp_path, shared):
    pid = shared.proc.pid
    job_id = enqueue(shared.db, run_config(world, tmp_path / "out", rounds=1, **LONG_TRAIN))
    shared.wait(job_id, training(1), "round 1 training under way")
    stages = stage_children(pid)
    assert len(stages) == 1
    stage_rss = rss_mb(stages[0].pid)
    servers = [p for p in descendants(pid) if p not in stages and p.ppid() == pid]
    server_rss = {p.pid: rss_mb(p.pid) for p in servers}
    assert stage_rss > 100  # torch, the model and its optimiser live in the stage process, not the worker
    # the fork server holds the imports every stage shares (even for a worker started outside the repository)
    fork_server = [p for p in servers if "forkserver" in " ".join(p.cmdline())]
    assert len(fork_server) == 1 and server_rss[fork_server[0].pid] > 100

    job, took = stop_and_time(shared, job_id)
    assert job.status == "stopped" and took < STOP_WITHIN_S
    psutil.wait_procs(stages, timeout=10)
    assert not stages[0].is_running(), "the stopped stage process is still there"
    assert stage_children(pid) == []
    # the worker itself is back at (about) its idle size, and nothing it keeps grew with the stopped stage
    assert rss_mb(pid) < shared.idle_rss_mb + 30, (rss_mb(pid), shared.idle_rss_mb)
    for server, before in server_rss.items():
        assert rss_mb(server) < before + 30


# --- 4. label corrections while a round trains --------------------------------------------------------


@slow
def test_labels_corrected_while_a_round_trains_are_kept_and_used_from_the_next_round(world, tmp_path, shared):
    from engine.runtime.context import StageContext
    from engine.runtime.round_data import training_rows

    config = run_config(world, tmp_path / "out", **SLOW_TRAIN)
    job_id = enqueue(shared.db, config)
    shared.wait(job_id, training(1), "round 1 training under way")
    store = shared.store()
    wanted = {}
    for k, p in enumerate(store.pairs(job_id, 1)):  # every pair, so that the ones the trainer flags are among them
        flip = {"a": "b", "b": "a"}[p.label]
        wanted[p.id] = flip if k % 2 else p.label
        store.set_label(p.id, wanted[p.id], "human", actor="tester", note="corrected while round 1 trains")
    still = store.job(job_id)
    assert (still.stage, still.round, still.status) == ("train", 1, "running"), "training ended before the labels"

    job = shared.wait(job_id)
    assert job.status == "done", job.error
    # none lost: every correction is in force, audited once, and never flagged, though the trainer judged them
    after = {p.id: p for p in store.pairs(job_id, 1)}
    assert {i: after[i].label for i in wanted} == wanted
    assert {after[i].label_source for i in wanted} == {"human"}
    assert all(after[i].noisy is False and after[i].warmup_flag is False for i in wanted)
    assert all(after[i].ext_margin is not None for i in wanted)  # the noise detector's numbers are kept
    assert Counter(e.pair_id for e in store.label_events() if e.pair_id in wanted) == Counter(set(wanted))
    at = {e["message"]: e["at"] for e in store.events(job_id, limit=10_000)}
    assert all(
        at["[round 1 train] started"] < e.at < at["[round 1 train] done"]
        for e in store.label_events()
        if e.pair_id in wanted
    )
    # round 1 trained on what it read at its start; round 2 trains on its own pairs plus these, as gold
    n1, n2 = len(wanted), len(store.pairs(job_id, 2))
    assert f"[round 1 train] training on {n1} pairs (0 human or gold)" in "\n".join(at)
    assert f"[round 2 train] training on {n2 + n1} pairs ({n1} human or gold)" in "\n".join(at)
    cfg = parse_config(config)
    rows = training_rows(StageContext(store, job_id, job.project_id, cfg, 2, "train"))
    gold = {r.pair_id: r for r in rows if r.pair_id in wanted}
    assert set(gold) == set(wanted) and all(r.trusted for r in gold.values())
    for pair_id, r in gold.items():
        p = after[pair_id]
        assert r.chosen == (p.response_a if wanted[pair_id] == "a" else p.response_b)
    assert integrity_ok(shared.db)


# --- a failed run does not block the queue; export jobs ------------------------------------------------


@slow
def test_a_failed_run_does_not_block_the_next_queued_run(world, tmp_path, shared):
    missing_model = str(tmp_path / "no-such-model")
    broken = enqueue(shared.db, run_config(world, tmp_path / "broken", model=missing_model, rounds=0))
    good = enqueue(shared.db, run_config(world, tmp_path / "good", rounds=0))
    failed = shared.wait(broken)
    assert failed.status == "failed"
    assert "no-such-model" in failed.error and "Traceback" not in failed.error
    job = shared.wait(good)
    assert job.status == "done", job.error
    assert shared.proc.poll() is None  # the worker lives on


@slow
def test_a_run_paused_at_its_review_gate_lets_the_queue_go_on_and_resumes_when_approved(world, tmp_path, shared):
    gated = enqueue(shared.db, run_config(world, tmp_path / "gated", rounds=1, review_gate=True))
    plain = enqueue(shared.db, run_config(world, tmp_path / "plain", rounds=0))
    job = shared.wait(gated, lambda j: j.status not in ("queued", "running"), "paused")
    assert (job.status, job.stage, job.round) == ("paused", "review", 1)
    assert shared.store().round(gated, 1).status == "review"
    assert shared.wait(plain).status == "done"
    shared.store().approve_review(gated, 1, actor="tester")
    job = shared.wait(gated)
    assert job.status == "done", job.error
    assert stage_starts(shared.db, gated)[(1, "train")] == 1


def finished_run(world, tmp_path, shared) -> int:
    """A done run of project 'jobs' in the shared database (an earlier test's, or a quick one now)."""
    done = [j for j in shared.store().jobs(statuses=("done",)) if j.kind == "run"]
    if done:
        return done[-1].id
    job_id = enqueue(shared.db, run_config(world, tmp_path / "run", rounds=0))
    assert shared.wait(job_id).status == "done"
    return job_id


@slow
def test_queued_export_jobs_are_run_by_the_worker(world, tmp_path, shared):
    from engine.data.export import ExportRequest
    from engine.runtime.worker import JOB_KINDS

    assert tuple(JOB_KINDS) == ("run", "export", "text-world", "seed-answers", "judge-check") and "export" in JOB_KINDS
    run_id = finished_run(world, tmp_path, shared)
    bad = ExportRequest(project=PROJECT, what="weights", out=str(tmp_path / "bad"))
    adapter = ExportRequest(project=PROJECT, what="adapter", out=str(tmp_path / "adapter"), job_id=run_id)
    dataset = ExportRequest(project=PROJECT, what="dataset", out=str(tmp_path / "dataset"))
    # as the studio's Export tab queues them
    ids = [enqueue(shared.db, yaml.safe_dump(asdict(r)), kind="export") for r in (bad, adapter, dataset)]
    jobs = [shared.wait(i) for i in ids]
    assert [j.status for j in jobs] == ["failed", "done", "done"], [j.error for j in jobs]
    assert "what must be one of" in jobs[0].error
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()
    }
    assert (tmp_path / "dataset" / "train.jsonl").is_file()
    for j in jobs[1:]:
        assert j.stage == "export" and j.progress_total > 0 and j.progress_done == j.progress_total
    assert any(f"to {tmp_path / 'adapter'}" in e["message"] for e in events(shared.db, ids[1]))
    assert not list(tmp_path.glob(".bad*")) and not (tmp_path / "bad").exists()

    # the same stage started as a command, the way a multi-GPU training stage is launched (engine.runtime.distributed)
    from engine.runtime.stage_process import stage_args, start_stage

    store = shared.store()
    request = ExportRequest(project=PROJECT, what="dataset", format="parquet", out=str(tmp_path / "by_command"))
    with store.write():  # queued and held by this test in one transaction, so the shared worker never sees it
        again = store.enqueue(
            Job(project_id=store.project(PROJECT).id, kind="export", config_yaml=yaml.safe_dump(asdict(request)))
        )
        store.claim_job("by-hand:1", os.getpid(), again)
    handle = start_stage(
        str(shared.db),
        again,
        0,
        "export",
        command=[
            sys.executable,
            "-m",
            "engine.runtime.stage_process",
            *stage_args(str(shared.db), again, 0, "export"),
        ],
    )
    code = None
    deadline = time.monotonic() + 120
    while code is None and time.monotonic() < deadline:
        code = handle.wait(0.5)
    assert code == 0 and (tmp_path / "by_command" / "train.parquet").is_file()
    assert store.round(again, 0).stages_done == ["export"]
    store.finish_job(again, "done")

    # a malformed request fails at once, before any process is started
    broken = enqueue(shared.db, f"project: {PROJECT}\nwhat: adapter\nout: x\ncolour: red\n", kind="export")
    job = shared.wait(broken)
    assert job.status == "failed" and "unknown field(s) colour" in job.error
    assert stage_starts(shared.db, broken) == Counter()


# --- the worker's hold on a job, and a planned shutdown ----------------------------------------------------


def wait_for_event(db: Path, job_id: int, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in e["message"] for e in events(db, job_id)):
        assert time.monotonic() < deadline, f"no '{text}' in the log of job {job_id}"
        time.sleep(0.1)


@slow
def test_a_worker_that_loses_its_job_stops_its_stage(world, tmp_path, shared):
    """A job declared stale and taken by another worker (say, on another host) is not run twice: the first
    worker notices at its next heartbeat, stops its stage and leaves the job alone."""
    job_id = enqueue(shared.db, run_config(world, tmp_path / "out", rounds=1, **LONG_TRAIN))
    shared.wait(job_id, training(1), "round 1 training under way")
    stages = stage_children(shared.proc.pid)
    store = shared.store()
    assert store.interrupt_job(job_id, store.job(job_id).worker)  # what a recovering worker does...
    assert store.requeue(job_id, ("interrupted",))
    assert store.claim_job("elsewhere:1", 1, job_id).worker == "elsewhere:1"  # ...before it claims the job
    wait_for_event(shared.db, job_id, "no longer holds this job")
    psutil.wait_procs(stages, timeout=10)
    assert stage_children(shared.proc.pid) == []
    job = store.job(job_id)
    assert (job.status, job.worker) == ("running", "elsewhere:1")  # untouched: it is the other worker's now
    starts = stage_starts(shared.db, job_id)
    assert (1, "evaluate") not in starts and (1, "finalize") not in starts  # nor did it go on to the next stages
    store.finish_job(job_id, "stopped")  # stand-in for the other worker


# --- a stage killed by a signal it did not ask for is a crash: retried once, then the job fails ------------------

# a one-round run whose seed DPO lasts a while (16 epochs), so a stage process is there to be killed at its start
CRASHABLE = {"rounds": 1, "epochs": 16, "batch_size": 4, "train": {"micro_batch_size": 4}}


def crash_seed_stage(shared: SharedWorker, job_id: int, attempt: int) -> None:
    """Once the job's seed DPO has started `attempt` times, SIGSEGV its stage process (as the one crash issue 38
    saw, at the start of seed DPO) and wait for it to be gone."""
    shared.wait(job_id, lambda j: stage_starts(shared.db, job_id)[(0, "seed")] >= attempt, f"seed start {attempt}")
    (stage,) = stage_children(shared.proc.pid)
    os.kill(stage.pid, signal.SIGSEGV)
    psutil.wait_procs([stage], timeout=30)


@slow
def test_a_stage_that_crashes_is_retried_once_and_ends_as_an_uninterrupted_run(world, tmp_path, shared):
    from benchmarks.faults import outcome_of

    reference = enqueue(shared.db, run_config(world, tmp_path / "reference", **CRASHABLE))
    victim = enqueue(shared.db, run_config(world, tmp_path / "victim", **CRASHABLE))
    assert shared.wait(reference).status == "done"
    crash_seed_stage(shared, victim, attempt=1)
    job = shared.wait(victim)
    assert job.status == "done", job.error
    log = [e["message"] for e in events(shared.db, victim)]
    assert [m for m in log if "crashed" in m] == ["[round 0 seed] stage seed crashed with SIGSEGV; retrying once"]
    starts = stage_starts(shared.db, victim)
    assert {k: n for k, n in starts.items() if n != 1} == {(0, "seed"): 2}  # the crashed stage alone ran again
    assert set(starts) == all_stages(job.config_yaml)
    # the same pairs (answers, judge labels, labels), metric series, round states and final weights
    assert outcome_of(shared.db, victim, tmp_path / "victim") == outcome_of(
        shared.db, reference, tmp_path / "reference"
    )
    assert shared.proc.poll() is None


@slow
def test_a_stage_that_crashes_again_fails_its_job_with_the_reason(world, tmp_path, shared):
    job_id = enqueue(shared.db, run_config(world, tmp_path / "out", **CRASHABLE))
    crash_seed_stage(shared, job_id, attempt=1)
    crash_seed_stage(shared, job_id, attempt=2)
    job = shared.wait(job_id)
    reason = "[round 0 seed] stage seed crashed with SIGSEGV again after one retry: the job fails"
    assert (job.status, job.error) == ("failed", reason)
    log = events(shared.db, job_id)
    assert sum("retrying once" in e["message"] for e in log) == 1
    assert (log[-1]["message"], log[-1]["level"]) == (reason, "error")
    assert stage_starts(shared.db, job_id) == {(0, "prepare"): 1, (0, "seed"): 2}  # nothing ran after it
    assert [r.status for r in shared.store().rounds(job_id)] == ["failed"]
    assert shared.proc.poll() is None  # the worker lives on


@slow
def test_a_worker_shut_down_mid_stage_puts_its_job_back_in_the_queue(world, tmp_path, shared):
    """SIGTERM (the studio closing) stops the running stage and queues the job again at once: a planned
    shutdown is not a crash, so it does not count against the automatic resumes. Last user of `shared`."""
    job_id = enqueue(shared.db, run_config(world, tmp_path / "out", rounds=1, **LONG_TRAIN))
    shared.wait(job_id, training(1), "round 1 training under way")
    tree = descendants(shared.proc.pid)
    shared.proc.terminate()
    assert shared.proc.wait(STOP_WITHIN_S) == 0
    gone, alive = psutil.wait_procs(tree, timeout=STOP_WITHIN_S)  # the stage saves its partial weights first
    assert alive == [], "the worker left processes behind"
    job = shared.store().job(job_id)
    assert (job.status, job.worker, job.pid) == ("queued", None, None)
    log = [e["message"] for e in events(shared.db, job_id)]
    assert any("shut down; the job resumes when a worker starts" in m for m in log)
    assert not any("resuming after an interruption" in m for m in log)


def test_every_job_kind_parses_its_request_and_names_an_entry_point_that_exists():
    import importlib

    from engine.config import RunConfig
    from engine.runtime.jobs import EXPORT, JOB_KINDS, RUN, TEXT_WORLD, job_request
    from engine.runtime.text_setup import TextSetupRequest

    for kind in JOB_KINDS.values():
        module, function = kind.entry.split(":")
        assert callable(getattr(importlib.import_module(module), function))
    requests = {
        RUN: "model: m\nrounds: 0\n",
        EXPORT: "project: p\nwhat: dataset\nout: x\n",
        TEXT_WORLD: "project: p\n",
    }
    parsed = {
        kind: job_request(Job(id=1, project_id=1, kind=kind, config_yaml=text)) for kind, text in requests.items()
    }
    assert isinstance(parsed[RUN], RunConfig) and isinstance(parsed[TEXT_WORLD], TextSetupRequest)
    assert type(parsed[EXPORT]).__name__ == "ExportRequest" and parsed[EXPORT].what == "dataset"
    with pytest.raises(ConfigError, match="not 'train'"):
        job_request(Job(id=1, project_id=1, kind="train"))


def test_store_job_transitions_are_conditional(tmp_path):
    """The guards the worker relies on, each one transaction: no resume of a running job, no heartbeat or
    interruption by a worker that does not hold the job, one requeue when two workers recover at once."""
    store = Store(tmp_path / "s.db")
    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run"))
    assert not store.requeue(job_id)  # queued already
    store.claim_job("h:1", 1)
    assert not store.requeue(job_id)  # running: a resume must not queue it a second time
    assert store.heartbeat(job_id, "h:1") and not store.heartbeat(job_id, "h:2")
    assert not store.interrupt_job(job_id, "h:2") and store.interrupt_job(job_id, "h:1")
    assert not store.heartbeat(job_id, "h:1")  # interrupted: h:1 lost it
    assert store.requeue(job_id, ("interrupted",)) and not store.requeue(job_id, ("interrupted",))
    store.claim_job("h:3", 3)
    assert store.mark_stale_jobs(60) == []  # a fresh heartbeat
    store.update_job(job_id, heartbeat_at="2000-01-01T00:00:00+00:00")
    assert store.mark_stale_jobs(60) == [job_id]  # stale, whatever the PID says (tests/test_recovery.py)
    assert store.mark_stale_jobs(60) == []


def test_stage_writes_never_overwrite_a_human_label(tmp_path):
    from storage import Example, Pair

    store = Store(tmp_path / "s.db")
    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run"))
    store.add_examples(
        project.id, [Example(role="pool", prompt=[{"role": "user", "content": q}]) for q in ("q0", "q1")]
    )
    ex = store.examples(project.id, "pool")
    store.add_pairs(
        [
            Pair(
                job_id=job_id,
                round=1,
                prompt=e.prompt,
                response_a="x",
                response_b="y",
                example_id=e.id,
                project_id=project.id,
            )
            for e in ex
        ]
    )
    human, other = store.pairs(job_id, 1)
    store.set_label(human.id, "b", "human")
    judged = {
        "label": "a",
        "label_source": "self",
        "noisy": True,
        "warmup_flag": True,
        "ext_margin": 0.3,
        "confidence": 0.9,
    }
    store.update_pairs({human.id: judged, other.id: judged}, keep_human=True)
    h, o = store.pair(human.id), store.pair(other.id)
    assert (h.label, h.label_source, h.noisy, h.ext_margin, h.confidence) == ("b", "human", False, 0.3, 0.9)
    assert (o.label, o.label_source, o.noisy, o.warmup_flag) == ("a", "self", True, True)
    assert h.warmup_flag is False


# --- 3. two workers, one queue ---------------------------------------------------------------------------


@slow
def test_two_workers_on_one_database_run_each_queued_run_exactly_once(world, tmp_path, workers):
    db = tmp_path / "queue.db"
    configs = [run_config(world, tmp_path / f"run{k}", rounds=1) for k in range(3)]
    ids = [enqueue(db, c) for c in configs]
    pair = [workers.start(db), workers.start(db)]
    for job_id in ids:
        job = wait_for(db, job_id, finished, "finished", RUN_TIMEOUT_S, procs=pair)
        assert job.status == "done", job.error
    store = Store(db)
    claims = {}
    for job_id, config in zip(ids, configs):
        log = [e["message"] for e in store.events(job_id, limit=10_000)]
        claimed = [m for m in log if m.startswith("claimed by ")]
        assert len(claimed) == 1, claimed  # one worker took it, once
        claims[job_id] = claimed[0].removeprefix("claimed by ")
        starts = stage_starts(db, job_id)
        assert set(starts) == all_stages(config) and set(starts.values()) == {1}  # no stage ran twice
        assert len(store.pairs(job_id, 1)) == written(db, job_id, 1) > 0
    assert len(set(claims.values())) == 2  # both workers took part
    assert integrity_ok(db)
