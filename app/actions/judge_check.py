"""The self-judge check as the studio asks for it: queue a `judge-check` job (engine.runtime.judge_check cross-fits
the project's labelled pairs in the worker) and read the latest one's result back from its metrics."""

from __future__ import annotations

from dataclasses import asdict

import yaml

from app.actions.job_queue import ACTIVE
from app.actions.lookups import ActionError, opened, project_of
from engine.config import ConfigError
from engine.runtime.jobs import JUDGE_CHECK
from engine.runtime.judge_check import JudgeCheckRequest, from_metrics
from engine.runtime.seed_answers import project_config
from storage import Job


def queue_judge_check(db: str, project: str, config: str = "", folds: int | None = None) -> dict:
    """Queue a check of each judge variant against the project's own labels. `config`: a saved configuration's
    name or YAML (empty: the project's latest); refused when it does not resolve or a check is already queued."""
    with opened(db) as store:
        proj = project_of(store, project)
        try:
            request = JudgeCheckRequest(project=proj.name, config=config or "", folds=folds or None)
            project_config(store, proj, request.config)
        except (ConfigError, ValueError) as e:
            raise ActionError(str(e)) from None
        waiting = [j.id for j in store.jobs(proj.id, statuses=ACTIVE) if j.kind == JUDGE_CHECK]
        if waiting:
            raise ActionError(f"a check of the self-judge is already under way (job #{waiting[0]})")
        job_id = store.enqueue(Job(project_id=proj.id, kind=JUDGE_CHECK, config_yaml=yaml.safe_dump(asdict(request))))
        store.log(job_id, f"queued from the studio (project {proj.name})")
    return {"job_id": job_id, "project": proj.name, "status": "queued"}


def judge_check_result(db: str, project: str) -> dict | None:
    """The project's latest judge-check job: its status, progress and error, and once done its figures
    ({"judges": {NAME: {"agree", "lo", "hi", "n"}}, "chosen": NAME, "minutes": m}); None when it has none."""
    with opened(db) as store:
        proj = project_of(store, project)
        checks = [j for j in store.jobs(proj.id) if j.kind == JUDGE_CHECK]
        if not checks:
            return None
        job = checks[-1]
        result = from_metrics(store.metrics(job.id)) if job.status == "done" else None
    out = {
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress_done / job.progress_total if job.progress_total else 0.0,
        "error": job.error,
    }
    return out | (result.as_json() if result else {"judges": {}, "chosen": None, "minutes": None})
