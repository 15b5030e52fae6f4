"""Jobs as the studio asks for them and shows them: queue a run or an export, stop, resume, approve a review
gate, and read a job's state, stage plan, log, metrics and evaluation table. The kinds and their stage plans are
the worker's registry (engine.runtime.jobs)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import yaml

from app.actions.configs import validate_config
from app.actions.lookups import ActionError, job_of, opened, project_of
from app.security import STUDIO_ACTOR
from engine.config import ConfigError, RunConfig
from engine.data.export import ExportRequest
from engine.data.report import round_rows, round_table
from engine.runtime.jobs import EXPORT, RUN, TEXT_WORLD, job_plan, job_request, plan
from storage import Job, Project, Store

RESUMABLE = ("stopped", "interrupted", "failed")
ACTIVE = ("queued", "running", "paused")
STALE_AFTER_S = 60.0  # a running job whose heartbeat is older than this is shown as probably interrupted


def queue_run(db: str, project: str, config_yaml: str) -> dict:
    """Queue a run of `project` with this configuration (validated first; nothing is queued on an error).
    The worker picks queued runs up in order."""
    cfg = validate_config(config_yaml)
    with opened(db) as store:
        proj = project_of(store, project)
        setting_up = [j.id for j in store.jobs(proj.id, statuses=ACTIVE) if j.kind == TEXT_WORLD]
        if setting_up:
            raise ActionError(
                f"project {proj.name} is still being set up (job #{setting_up[0]} builds its text "
                "world): queue a run once it is done"
            )
        check_data(store, proj, cfg)
        cfg.project = proj.name
        if cfg.model and cfg.model != proj.model:
            store.ensure_project(proj.name, model=cfg.model)
        job_id = store.enqueue(Job(project_id=proj.id, kind=RUN, config_yaml=cfg.to_yaml()))
        store.log(job_id, f"queued from the studio (project {proj.name})")
    return {"job_id": job_id, "project": proj.name, "status": "queued"}


def check_data(store: Store, proj: Project, cfg: RunConfig) -> None:
    """A run needs seed pairs, and pool prompts when it has rounds: from a data file the config names, or
    imported into the project. Refused here, before anything is queued."""
    for key in ("model", "seed_data", "prompt_pool", "eval_data"):
        value = getattr(cfg, key)
        local = value.startswith(("/", "./", "../", "~"))
        if local and not Path(value).expanduser().exists():
            raise ActionError(f"key '{key}': no such {'folder' if key == 'model' else 'file'}: {value}")
    if not cfg.seed_data and not store.seed_pairs(proj.id):
        raise ActionError(
            f"project {proj.name} has no seed pairs: import a seed file on the Project tab, rank the "
            "answers sampled for its seed prompts, or set seed_data in the configuration"
        )
    if cfg.rounds > 0 and not cfg.prompt_pool and store.count_examples(proj.id, "pool") == 0:
        raise ActionError(
            f"project {proj.name} has no pool prompts for its {cfg.rounds} rounds: import a pool "
            "file on the Project tab (or set prompt_pool in the configuration)"
        )


def queue_export(db: str, request: ExportRequest) -> int:
    """Queue a model or adapter export as a job (it loads weights, which only the worker does); its id."""
    with opened(db) as store:
        proj = project_of(store, request.project)
        return store.enqueue(Job(project_id=proj.id, kind=EXPORT, config_yaml=yaml.safe_dump(asdict(request))))


def _age_s(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()


def stage_plan(cfg: RunConfig | None) -> list[tuple[int, str]]:
    """The stages a run goes through, in order (engine.runtime.jobs.plan, which imports no torch)."""
    return [(ref.round, ref.stage) for ref in plan(cfg)] if cfg is not None else []


def other_plan(job: Job) -> list[tuple[int, str]]:
    """The stages of a job that is not a run (an export, a text world setup); none when its request is invalid."""
    try:
        return [(ref.round, ref.stage) for ref in job_plan(job)]
    except ConfigError:
        return []


def job_config(job: Job) -> RunConfig | None:
    """A run job's configuration (engine.runtime.jobs.job_request); None when it holds no valid one."""
    try:
        return job_request(job) if job.kind == RUN and job.config_yaml else None
    except ConfigError:
        return None


def job_status(db: str, job_id: int, log_lines: int = 30) -> dict:
    """Everything the Run tab shows of one job: state, stage, round, counts, ETA, stage plan, log tail."""
    with opened(db) as store:
        job = job_of(store, job_id)
        project = store.project_by_id(job.project_id)
        rounds = {r.round: r for r in store.rounds(job.id)}
        events = store.events(job.id, limit=log_lines)
    beat_age = _age_s(job.heartbeat_at)
    stale = job.status == "running" and (beat_age is None or beat_age > STALE_AFTER_S)
    cfg = job_config(job) if job.kind == RUN else None
    stages = []
    for rnd, stage in stage_plan(cfg) if job.kind == RUN else other_plan(job):
        done = rnd in rounds and stage in rounds[rnd].stages_done
        current = job.status in ("running", "paused") and job.round == rnd and job.stage == stage
        stages.append({"round": rnd, "stage": stage, "state": "done" if done else "current" if current else "pending"})
    total = job.progress_total or 0
    return {
        "job_id": job.id,
        "project": project.name,
        "kind": job.kind,
        "status": job.status,
        "stale": stale,
        "stage": job.stage,
        "round": job.round,
        "progress_done": job.progress_done,
        "progress_total": total,
        "fraction": (job.progress_done / total) if total else 0.0,
        "eta_s": job.eta_s,
        "stop_requested": job.stop_requested,
        "error": job.error,
        "worker": job.worker,
        "heartbeat_age_s": beat_age,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "rounds_total": cfg.rounds if cfg else None,
        "stages_done": sum(s["state"] == "done" for s in stages),
        "stages_total": len(stages),
        "plan": stages,
        "round_status": {str(r): v.status for r, v in rounds.items()},
        "config_yaml": job.config_yaml,
        "log": [{"id": e["id"], "at": e["at"], "level": e["level"], "message": e["message"]} for e in events],
    }


def jobs(db: str, project: str) -> list[dict]:
    with opened(db) as store:
        proj = store.project((project or "").strip())
        if proj is None:
            return []
        return [
            {
                "job_id": j.id,
                "kind": j.kind,
                "status": j.status,
                "stage": j.stage,
                "round": j.round,
                "created_at": j.created_at,
            }
            for j in store.jobs(proj.id)
        ]


def stop_run(db: str, job_id: int) -> dict:
    """A running job is asked to stop (the worker stops its stage process); a queued or paused one, which no
    process holds, is marked stopped at once. Either way it can be resumed later."""
    with opened(db) as store:
        job = job_of(store, job_id)
        if job.status == "running":
            store.request_stop(job.id)
            store.log(job.id, "stop requested from the studio")
        elif job.status in ("queued", "paused"):
            store.finish_job(job.id, "stopped")
            store.log(job.id, f"stopped from the studio while {job.status}")
        else:
            raise ActionError(f"job {job.id} is {job.status}: nothing to stop")
        return {"job_id": job.id, "status": store.job(job.id).status, "stop_requested": True}


def resume_run(db: str, job_id: int) -> dict:
    """Queue a stopped, interrupted or failed job again: it continues after its last completed stage."""
    with opened(db) as store:
        job = job_of(store, job_id)
        if job.status == "paused":
            raise ActionError(f"job {job.id} is waiting at the review gate of round {job.round}: approve the review")
        if job.status not in RESUMABLE:
            raise ActionError(f"job {job.id} is {job.status}; only {', '.join(RESUMABLE)} jobs can be resumed")
        store.requeue(job.id)
        store.log(job.id, "resumed from the studio")
        return {"job_id": job.id, "status": "queued"}


def approve_review(db: str, job_id: int, actor: str = STUDIO_ACTOR) -> dict:
    """The person is done reviewing the round the job paused at: it is queued to train."""
    with opened(db) as store:
        job = job_of(store, job_id)
        if job.status != "paused" or job.round is None:
            raise ActionError(f"job {job.id} is {job.status}, not waiting for a review")
        store.approve_review(job.id, job.round, actor=actor)
        return {"job_id": job.id, "round": job.round, "status": "queued"}


def run_metrics(db: str, job_id: int, names: list[str] | None = None) -> list[dict]:
    with opened(db) as store:
        return [asdict(m) for m in store.metrics(job_of(store, job_id).id, names)]


def evaluation_table(db: str, job_id: int) -> str | None:
    """The table `launch.py run` prints at the end, of the rounds evaluated so far; None before the first."""
    with opened(db) as store:
        return round_table(store, job_id) if round_rows(store, job_id) else None
