"""The job kinds and what each runs, as an ordered list of stages: the one registry the worker executes and
the studio offers. Imports no torch, so the worker (which only schedules stage processes) and the studio stay
light."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import yaml

from engine.config import ConfigError, RunConfig, parse_config
from engine.runtime import text_setup
from storage import Job


@dataclass(frozen=True)
class StageRef:
    round: int
    stage: str


def run_dir(cfg: RunConfig, db: str | Path, job_id: int) -> Path:
    """Where a run writes its rounds and final model: the config's output_dir, else runs/<database>/<project>/
    job_<id> beside the database, so two databases (or a recreated one) never share a folder."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    db = Path(db).resolve()
    return db.parent / "runs" / db.stem / cfg.project / f"job_{job_id}"


def plan(cfg: RunConfig) -> list[StageRef]:
    """An SPA run: prepare → seed DPO → evaluate, then per round generate → judge → (review gate) → train →
    evaluate, and finalize."""
    stages = [StageRef(0, "prepare"), StageRef(0, "seed"), StageRef(0, "evaluate")]
    for i in range(1, cfg.rounds + 1):
        names = ["generate", "judge"] + (["review"] if cfg.review_gate else []) + ["train", "evaluate"]
        stages += [StageRef(i, s) for s in names]
    stages.append(StageRef(cfg.rounds, "finalize"))
    return stages


RUN = "run"  # the job kinds' names: no other module spells them
EXPORT = "export"
TEXT_WORLD = text_setup.KIND

EXPORT_PLAN = [StageRef(0, "export")]


def request_of(job: Job, cls, what: str):
    """The request dataclass `cls` a non-run job holds (the studio stores it as YAML of its fields);
    ConfigError naming the job and the field when it does not fit."""
    where = f"job {job.id} {what} request"
    try:
        data = yaml.safe_load(job.config_yaml or "")
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping of {cls.__name__} fields")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:  # a required field is missing, a value out of range
        raise ConfigError(f"{where}: {e}") from None


def export_request(job: Job):
    """The ExportRequest an export job holds."""
    from engine.data.export import ExportRequest
    return request_of(job, ExportRequest, "export")


def text_setup_request(job: Job) -> text_setup.TextSetupRequest:
    """The TextSetupRequest a text-world setup job holds."""
    return request_of(job, text_setup.TextSetupRequest, "text world")


def run_config(job: Job) -> RunConfig:
    """The RunConfig a run job holds, parsed and validated (ConfigError naming the job otherwise)."""
    return parse_config(job.config_yaml, f"job {job.id} configuration")


def _run_plan(job: Job) -> list[StageRef]:
    return plan(parse_config(job.config_yaml, f"job {job.id} configuration"))


def _export_plan(job: Job) -> list[StageRef]:
    export_request(job)
    return EXPORT_PLAN


def _text_setup_plan(job: Job) -> list[StageRef]:
    text_setup_request(job)
    return [StageRef(0, stage) for stage in text_setup.STAGES]


JOB_PLANS: dict[str, Callable[[Job], list[StageRef]]] = {"run": _run_plan, "export": _export_plan,
                                                         text_setup.KIND: _text_setup_plan}
JOB_KINDS = tuple(JOB_PLANS)  # what a worker executes; the studio reads it to offer export jobs


def job_plan(job: Job) -> list[StageRef]:
    """The stages of any job; ConfigError when its kind is unknown or its configuration or request is invalid."""
    if job.kind not in JOB_PLANS:
        raise ConfigError(f"job {job.id}: this worker runs {', '.join(JOB_KINDS)} jobs, not {job.kind!r}")
    return JOB_PLANS[job.kind](job)


def launch_command(job: Job, stage: str, args: list[str]) -> list[str] | None:
    """The command a stage runs as when it spans several processes (training and judging on more than one
    GPU, under `accelerate launch`); None for a stage the worker forks as one process."""
    from engine.runtime.distributed import MULTI_PROCESS_STAGES, stage_launch_command

    if job.kind != "run" or stage not in MULTI_PROCESS_STAGES:
        return None
    cfg = parse_config(job.config_yaml, f"job {job.id} configuration")
    return stage_launch_command(cfg, args, stage) if cfg.train.num_gpus > 1 else None
