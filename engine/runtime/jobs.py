"""The job kinds, one registry: for each kind (`JobKind`) how its stored YAML becomes a typed request, the stages it
runs and the entry point that runs one of them. The worker executes it, the stage process dispatches through it and
the studio offers what it lists (`JOB_KINDS`). Imports no torch, so the worker (which only schedules stage
processes) and the studio stay light; an entry point is named, not imported, and only a stage process loads it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable, Union

import yaml

from engine.config import ConfigError, RunConfig, run_config_of
from engine.runtime import auto_judge, judge_check, seed_answers, text_setup
from storage import Job

if TYPE_CHECKING:
    from engine.data.export import ExportRequest
    from engine.runtime.context import StopFlag
    from engine.runtime.distributed import Ranks
    from storage import Store

RUN = "run"  # the job kinds' names: no other module spells them
EXPORT = "export"
TEXT_WORLD = "text-world"
SEED_ANSWERS = "seed-answers"
JUDGE_CHECK = "judge-check"

JobRequest = Union[
    RunConfig,
    "ExportRequest",
    text_setup.TextSetupRequest,
    seed_answers.SeedAnswersRequest,
    judge_check.JudgeCheckRequest,
]  # what `job_request` returns, per kind


@dataclass(frozen=True)
class StageRef:
    round: int
    stage: str


def plan(cfg: RunConfig) -> list[StageRef]:
    """An SPA run: prepare → (judge-check, for judge.kind auto) → seed DPO → evaluate, then per round generate →
    judge → (review gate) → train → evaluate, and finalize."""
    check = [StageRef(0, auto_judge.STAGE)] if cfg.judge.kind == auto_judge.KIND else []
    stages = [StageRef(0, "prepare"), *check, StageRef(0, "seed"), StageRef(0, "evaluate")]
    for i in range(1, cfg.rounds + 1):
        names = ["generate", "judge"] + (["review"] if cfg.review_gate else []) + ["train", "evaluate"]
        stages += [StageRef(i, s) for s in names]
    stages.append(StageRef(cfg.rounds, "finalize"))
    return stages


@dataclass
class StageCall:
    """One stage of one job as the stage process hands it to its kind's entry point."""

    store: Store
    job: Job
    request: JobRequest  # the job's typed request, parsed once by the stage process
    round: int
    stage: str
    stop: StopFlag
    ranks: Ranks
    echo: bool
    say: Callable[..., None]  # (message, level="info", every_rank=False): a line of the job's log


@dataclass(frozen=True)
class JobKind:
    """One kind of job. `entry` is "module:function" taking a StageCall, imported by the stage process alone (it
    loads torch); `launch` is the command a stage spanning several processes runs as (None: forked as one)."""

    name: str
    parse: Callable[[Job], JobRequest]  # the job's YAML as its typed request; ConfigError naming the job
    plan: Callable[[JobRequest], list[StageRef]]
    entry: str
    keeps_rounds: bool = False  # its rounds are SPA rounds: the worker records each one's status
    launch: Callable[[JobRequest, str, list[str]], list[str] | None] | None = None

    def run_stage(self, call: StageCall) -> None:
        """One stage through the entry point, imported only now (in the stage process)."""
        module, function = self.entry.split(":")
        getattr(importlib.import_module(module), function)(call)


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


def _export_request(job: Job) -> ExportRequest:
    from engine.data.export import ExportRequest

    return request_of(job, ExportRequest, "export")


def _text_setup_request(job: Job) -> text_setup.TextSetupRequest:
    return request_of(job, text_setup.TextSetupRequest, "text world")


def _seed_answers_request(job: Job) -> seed_answers.SeedAnswersRequest:
    return request_of(job, seed_answers.SeedAnswersRequest, "seed answers")


def _judge_check_request(job: Job) -> judge_check.JudgeCheckRequest:
    return request_of(job, judge_check.JudgeCheckRequest, "judge check")


def _run_launch(cfg: RunConfig, stage: str, args: list[str]) -> list[str] | None:
    """Training and judging on more than one GPU run under `accelerate launch`."""
    from engine.runtime.distributed import MULTI_PROCESS_STAGES, stage_launch_command

    if stage not in MULTI_PROCESS_STAGES or cfg.train.num_gpus <= 1:
        return None
    return stage_launch_command(cfg, args, stage)


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            RUN,
            run_config_of,
            plan,
            "engine.runtime.stage_process:run_spa_stage",
            keeps_rounds=True,
            launch=_run_launch,
        ),
        JobKind(
            EXPORT, _export_request, lambda req: [StageRef(0, "export")], "engine.runtime.stage_process:run_export"
        ),
        JobKind(
            TEXT_WORLD,
            _text_setup_request,
            lambda req: [StageRef(0, stage) for stage in text_setup.STAGES],
            "engine.runtime.stage_process:run_text_setup_stage",
        ),
        JobKind(
            SEED_ANSWERS,
            _seed_answers_request,
            lambda req: [StageRef(0, stage) for stage in seed_answers.STAGES],
            "engine.runtime.stage_process:run_seed_answers_stage",
        ),
        JobKind(
            JUDGE_CHECK,
            _judge_check_request,
            lambda req: [StageRef(0, stage) for stage in judge_check.STAGES],
            "engine.runtime.stage_process:run_judge_check_stage",
        ),
    )
}  # iterating gives the kinds' names: what a worker executes and the studio offers


def job_kind(job: Job) -> JobKind:
    """The registry's record of the job's kind; ConfigError when this worker does not run that kind."""
    if job.kind not in JOB_KINDS:
        raise ConfigError(f"job {job.id}: this worker runs {', '.join(JOB_KINDS)} jobs, not {job.kind!r}")
    return JOB_KINDS[job.kind]


def job_request(job: Job) -> JobRequest:
    """The job's YAML parsed and validated into its kind's typed record: RunConfig, ExportRequest,
    TextSetupRequest, SeedAnswersRequest or JudgeCheckRequest (ConfigError naming the job otherwise). Every reader
    of a job's configuration takes this."""
    return job_kind(job).parse(job)


def job_plan(job: Job) -> list[StageRef]:
    """The stages of any job; ConfigError when its kind is unknown or its configuration or request is invalid."""
    kind = job_kind(job)
    return kind.plan(kind.parse(job))


def launch_command(job: Job, stage: str, args: list[str], request: JobRequest | None = None) -> list[str] | None:
    """The command a stage runs as when it spans several processes; None for a stage the worker forks as one
    process. `request`: the job's, when the caller has parsed it already."""
    kind = job_kind(job)
    if kind.launch is None:
        return None
    return kind.launch(request if request is not None else kind.parse(job), stage, args)
