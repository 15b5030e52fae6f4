"""What the studio can do, as plain functions of the database path: the UI callbacks and the named API
endpoints (app/api.py) both call these. They read storage and write intentions only (projects, configs,
imported rows, labels, queued jobs, stop requests); nothing here trains or loads a model.

Each call opens its own `Store` and closes it: Gradio runs callbacks on a thread pool and one SQLite
connection must not be shared by concurrent transactions."""
from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
import tempfile
from pathlib import Path
from typing import Iterator

import yaml

from engine.config import ConfigError, RunConfig, parse_config, uses_text_world
from engine.config import config_fields as config_fields  # handed on: the form's help and defaults
from engine.data.export import ExportError as ExportError  # handed on to the tabs
from engine.data.export import ExportRequest as ExportRequest
from engine.data.export import export as export
from engine.data.export import exportable as exportable
from engine.data.report import round_rows as round_rows
from engine.data.report import round_table as round_table
from engine.runtime import text_setup
from engine.runtime.jobs import JOB_KINDS as JOB_KINDS
from engine.runtime.jobs import job_plan
from engine.runtime.jobs import run_dir as run_dir
from storage import Job, Pair, Project, ReviewFilter, Store
from storage.records import LABEL_SOURCES, LABELS, REVIEW_ORDERS, ROLES

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
TEXT_DEMO = "text-demo"  # the second demo project: SmolLM2-135M-Instruct with IFEval gold (the text world)
TEXT_DEMO_TITLE = "Instruction following, SmolLM2-135M"
TEXT_DEMO_CONFIG = ROOT / "configs" / "text_demo.yaml"
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESUMABLE = ("stopped", "interrupted", "failed")
ACTIVE = ("queued", "running", "paused")
STALE_AFTER_S = 60.0  # a running job whose heartbeat is older than this is shown as probably interrupted
PAGE_SIZES = (20, 30, 50)
REVIEW_ACTIONS = ("keep", "flip") + LABELS


class ActionError(ValueError):
    """A request the studio refuses, with a message meant for the person who made it."""


@contextlib.contextmanager
def opened(db: str) -> Iterator[Store]:
    store = Store(db)
    try:
        yield store
    finally:
        store.close()


def project_of(store: Store, name: str) -> Project:
    name = (name or "").strip()
    if not name:
        raise ActionError("choose or create a project first")
    found = store.project(name)
    if found is None:
        raise ActionError(f"no project named {name!r}")
    return found


def job_of(store: Store, job_id) -> Job:
    try:
        return store.job(int(job_id))
    except (TypeError, ValueError, LookupError):
        raise ActionError(f"no run with id {job_id!r}") from None


def pair_of(store: Store, pair_id) -> Pair:
    try:
        return store.pair(int(pair_id))
    except (TypeError, ValueError):
        raise ActionError(f"no pair {pair_id}") from None


# projects -------------------------------------------------------------------------------------------------

def ensure_demo_project(db: str) -> bool:
    """On a fresh database, the demo project with configs/demo.yaml saved as its configuration (nothing is
    started). Returns whether it was created."""
    with opened(db) as store:
        if store.projects():
            return False
        text = DEMO_CONFIG.read_text(encoding="utf-8") if DEMO_CONFIG.is_file() else "project: demo\nmodel: demo:model\n"
        project = store.ensure_project("demo", model="demo:model")
        store.save_config(project.id, "demo", text)
        return True


@dataclass
class TextDemoState:
    """Where the text demo project stands: offered (not set up and no setup job under way), being set up, or
    ready (its seed pairs imported). `job` is its newest setup job's status (job_status), if any."""
    exists: bool
    ready: bool
    offered: bool
    job: dict | None = None


def text_demo_state(db: str) -> TextDemoState:
    with opened(db) as store:
        proj = store.project(TEXT_DEMO)
        ready = bool(proj) and store.count_examples(proj.id, "seed") > 0
    job = setup_job(db, TEXT_DEMO)
    busy = job is not None and job["status"] in ACTIVE
    return TextDemoState(exists=proj is not None, ready=ready, offered=not ready and not busy, job=job)


def setup_job(db: str, project: str) -> dict | None:
    """The status (job_status) of the project's newest text world setup job; None when it has none."""
    with opened(db) as store:
        proj = store.project((project or "").strip())
        setups = [j.id for j in store.jobs(proj.id) if j.kind == text_setup.KIND] if proj else []
    return job_status(db, setups[-1], log_lines=3) if setups else None


def open_text_demo(db: str) -> dict:
    """Open the demo project "Instruction following, SmolLM2-135M": created on first use with
    configs/text_demo.yaml as its configuration, and a background `text-world` job queued that fetches the model,
    builds (or finds cached) the text world and imports its seed pairs and pool prompts. Nothing is queued when
    the rows are already imported or a setup job is queued or running; after a failed one, a new one is.
    SPA_TEXT_WORLD_SIZE=mini asks for the mini world (tests), recorded in the job's request."""
    size = os.environ.get(text_setup.SIZE_ENV) or "full"
    if size not in text_setup.SIZES:
        raise ActionError(f"{text_setup.SIZE_ENV} must be one of {', '.join(text_setup.SIZES)}, not {size!r}")
    request = yaml.safe_dump(asdict(text_setup.TextSetupRequest(project=TEXT_DEMO, size=size)), sort_keys=False)
    with opened(db) as store, store.write():
        proj = store.project(TEXT_DEMO) or store.ensure_project(TEXT_DEMO, model="text:model")
        if not store.configs(proj.id):
            store.save_config(proj.id, TEXT_DEMO, TEXT_DEMO_CONFIG.read_text(encoding="utf-8"))
        busy = [j for j in store.jobs(proj.id, statuses=ACTIVE) if j.kind == text_setup.KIND]
        job_id = None
        if store.count_examples(proj.id, "seed") == 0 and not busy:
            job_id = store.enqueue(Job(project_id=proj.id, kind=text_setup.KIND, config_yaml=request))
            store.log(job_id, f"queued from the studio: set up project {TEXT_DEMO} ({size} text world)")
    return {"project": TEXT_DEMO, "job_id": job_id or (busy[0].id if busy else None), "queued": job_id is not None}


def project_names(db: str) -> list[str]:
    with opened(db) as store:
        return [p.name for p in store.projects()]


def create_project(db: str, name: str, model: str = "") -> dict:
    name = (name or "").strip()
    if not PROJECT_NAME.match(name):
        raise ActionError("a project name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    with opened(db) as store:
        project = store.ensure_project(name, model=(model or "").strip())
        return asdict(project)


def project_summary(db: str, project: str) -> dict:
    with opened(db) as store:
        proj = project_of(store, project)
        return {"project": proj.name, "model": proj.model,
                "examples": {role: store.count_examples(proj.id, role) for role in ROLES},
                "labels": store.label_source_counts(proj.id),
                "jobs": len(store.jobs(proj.id))}


# import ---------------------------------------------------------------------------------------------------

@dataclass
class ImportReport:
    ok: bool
    file: str
    role: str
    format: str = ""
    rows_read: int = 0
    examples: int = 0
    first_rows: list[dict] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)  # file, line, unit, field, message
    duplicates: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    added: int = 0
    already_present: int = 0
    project: str = ""


def _issue(issue, shown_name: str) -> dict:
    return {"file": shown_name, "line": issue.line, "unit": issue.unit, "field": issue.field or "",
            "message": issue.message}


def _short(text: str | None, limit: int = 160) -> str:
    if text is None:
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# where the studio may read and write on its machine -------------------------------------------------------

def data_roots(db: str) -> list[Path]:
    """Folders whose files the API may read (preview, import): the database's folder (the project's), Gradio's
    upload folder, and any listed in SPA_DATA_ROOTS (separated by the OS path separator)."""
    uploads = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    extra = [p for p in os.environ.get("SPA_DATA_ROOTS", "").split(os.pathsep) if p]
    return [Path(p).expanduser().resolve() for p in (Path(db).parent, uploads, *extra)]


def export_root(db: str) -> Path:
    """The folder every studio export lands under: SPA_EXPORT_ROOT, or the database's folder."""
    return Path(os.environ.get("SPA_EXPORT_ROOT") or Path(db).parent).expanduser().resolve()


def readable_path(db: str, path: str) -> str:
    """`path` resolved (symlinks and `..` followed first), or ActionError when it lies outside every data root."""
    resolved = Path(path or ".").expanduser().resolve()
    roots = data_roots(db)
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ActionError(f"{path}: the studio reads files only under {', '.join(map(str, roots))} "
                          "(upload the file, or add its folder to SPA_DATA_ROOTS)")
    return str(resolved)


def _check_import_args(path: str, role: str) -> None:
    if role not in ROLES:
        raise ActionError(f"role must be one of {', '.join(ROLES)}")
    if not path or not Path(path).exists():
        raise ActionError(f"no such file: {path}")


def preview_import(path: str, role: str, shown_name: str | None = None, rows: int = 5) -> ImportReport:
    """Validate a file as `role` without writing anything: detected format, row count, first rows, every error
    with file, line and field."""
    from engine.data.importers import ImportFailed, load_examples

    _check_import_args(path, role)
    name = shown_name or Path(path).name
    try:
        result = load_examples(path, role)
    except ImportFailed as e:
        return ImportReport(ok=False, file=name, role=role, issues=[_issue(i, name) for i in e.issues])
    first = [{"line": ex.source_line, "prompt": _short(ex.prompt_text), "chosen": _short(ex.chosen),
              "rejected": _short(ex.rejected)} for ex in result.examples[:rows]]
    return ImportReport(ok=True, file=name, role=role, format=result.format, rows_read=result.rows_read,
                        examples=len(result.examples), first_rows=first,
                        duplicates=[_issue(i, name) for i in result.duplicates],
                        skipped=[_issue(i, name) for i in result.skipped])


def import_file(db: str, path: str, project: str, role: str, shown_name: str | None = None) -> ImportReport:
    """Validate and import a whole file, all or nothing; the project is created when it does not exist."""
    from engine.data.importers import ImportFailed, load_examples

    _check_import_args(path, role)
    name = shown_name or Path(path).name
    try:
        result = load_examples(path, role)
    except ImportFailed as e:
        return ImportReport(ok=False, file=name, role=role, issues=[_issue(i, name) for i in e.issues],
                            project=project)
    for ex in result.examples:  # where the rows came from, not Gradio's upload folder
        ex.source_file = name
    name_ok = create_project(db, project)["name"]  # validates the name; creates the project when new
    with opened(db) as store:
        proj = project_of(store, name_ok)
        added, already = store.add_examples(proj.id, result.examples)
    return ImportReport(ok=True, file=name, role=role, format=result.format, rows_read=result.rows_read,
                        examples=len(result.examples), duplicates=[_issue(i, name) for i in result.duplicates],
                        skipped=[_issue(i, name) for i in result.skipped], added=added, already_present=already,
                        project=proj.name)


# configurations -------------------------------------------------------------------------------------------

def validate_config(text: str) -> RunConfig:
    """Parse and check a run configuration; ActionError carries the line and key of the first problem."""
    try:
        return parse_config(text or "", "config")
    except ConfigError as e:
        raise ActionError(str(e)) from None


def with_project(text: str, project: str) -> str:
    """The YAML with its `project` key set to the studio's project (comments are kept only when it already
    matches)."""
    data = yaml.safe_load(text or "") or {}
    if not isinstance(data, dict) or data.get("project") == project:
        return text
    data = {"project": project, **{k: v for k, v in data.items() if k != "project"}}
    return yaml.safe_dump(data, sort_keys=False)


def validate_config_or_none(text: str) -> RunConfig | None:
    try:
        return parse_config(text, "config") if text else None
    except ConfigError:
        return None


def config_file(db: str, project: str, name: str) -> Path:
    """Where a saved configuration is also written as YAML: beside the database, under runs/PROJECT/configs/
    (runs/ is where runs write too, and is kept out of git)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip() or "run").strip("._") or "run"
    return Path(db).resolve().parent / "runs" / project / "configs" / f"{safe}.yaml"


def run_command(db: str, config_path: str | Path) -> str:
    return f"python launch.py run {config_path} --db {db}"


def train_command(db: str, text: str) -> str:
    """The command line the worker builds for a training stage of this configuration (accelerate launch
    past one GPU); empty while the YAML does not validate."""
    from engine.runtime.distributed import shown_train_command
    try:
        return shown_train_command(validate_config(text), db)
    except (ActionError, ValueError, FileNotFoundError):
        return ""


def save_config(db: str, project: str, name: str, text: str) -> dict:
    """Validate, store in the database (configs table) and write the YAML file; returns its id and path."""
    name = (name or "").strip() or "run"
    cfg = validate_config(text)
    with opened(db) as store:
        proj = project_of(store, project)
        text = with_project(text, proj.name)
        config_id = store.save_config(proj.id, name, text)
        store.ensure_project(proj.name, model=cfg.model)
    path = config_file(db, proj.name, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return {"id": config_id, "name": name, "path": str(path), "yaml": text, "command": run_command(db, path)}


def saved_configs(db: str, project: str) -> list[dict]:
    with opened(db) as store:
        proj = store.project((project or "").strip())
        return store.configs(proj.id) if proj else []


def latest_config(db: str, project: str) -> str:
    """The project's last saved configuration, or a starting point that runs on its own data."""
    configs = saved_configs(db, project)
    return configs[-1]["yaml"] if configs else default_config(db, project)


def default_config(db: str, project: str) -> str:
    """A valid configuration for a project that has none: its model (the demo model until one is chosen), the
    method's defaults, and as many prompts per round as its imported pool holds for three rounds. The data are
    the project's imported rows, so no data file is named."""
    with opened(db) as store:
        proj = store.project((project or "").strip())
        model = (proj.model if proj else "") or "demo:model"
        pool = store.count_examples(proj.id, "pool") if proj else 0
    cfg = RunConfig(project=(project or "").strip() or "default", model=model)
    if pool:
        cfg.prompts_per_round = max(1, pool // cfg.rounds)
    return cfg.to_yaml()


# jobs -----------------------------------------------------------------------------------------------------

def queue_run(db: str, project: str, config_yaml: str) -> dict:
    """Queue a run of `project` with this configuration (validated first; nothing is queued on an error).
    The worker picks queued runs up in order."""
    cfg = validate_config(config_yaml)
    with opened(db) as store:
        proj = project_of(store, project)
        setting_up = [j.id for j in store.jobs(proj.id, statuses=ACTIVE) if j.kind == text_setup.KIND]
        if setting_up:
            raise ActionError(f"project {proj.name} is still being set up (job #{setting_up[0]} builds its text "
                              "world): queue a run once it is done")
        check_data(store, proj, cfg)
        cfg.project = proj.name
        if cfg.model and cfg.model != proj.model:
            store.ensure_project(proj.name, model=cfg.model)
        job_id = store.enqueue(Job(project_id=proj.id, kind="run", config_yaml=cfg.to_yaml()))
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
    if not cfg.seed_data and store.count_examples(proj.id, "seed") == 0:
        raise ActionError(f"project {proj.name} has no seed pairs: import a seed file on the Project tab "
                          "(or set seed_data in the configuration)")
    if cfg.rounds > 0 and not cfg.prompt_pool and store.count_examples(proj.id, "pool") == 0:
        raise ActionError(f"project {proj.name} has no pool prompts for its {cfg.rounds} rounds: import a pool "
                          "file on the Project tab (or set prompt_pool in the configuration)")


def _age_s(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()


def stage_plan(cfg: RunConfig | None) -> list[tuple[int, str]]:
    """The stages a run goes through, in order (engine.runtime.jobs.plan, which imports no torch)."""
    from engine.runtime.jobs import plan
    return [(ref.round, ref.stage) for ref in plan(cfg)] if cfg is not None else []


def other_plan(job: Job) -> list[tuple[int, str]]:
    """The stages of a job that is not a run (an export, a text world setup); none when its request is invalid."""
    try:
        return [(ref.round, ref.stage) for ref in job_plan(job)]
    except ConfigError:
        return []


def job_config(job: Job) -> RunConfig | None:
    try:
        return parse_config(job.config_yaml, f"job {job.id}") if job.config_yaml else None
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
    cfg = job_config(job) if job.kind == "run" else None
    plan = []
    for rnd, stage in stage_plan(cfg) if job.kind == "run" else other_plan(job):
        done = rnd in rounds and stage in rounds[rnd].stages_done
        current = job.status in ("running", "paused") and job.round == rnd and job.stage == stage
        plan.append({"round": rnd, "stage": stage, "state": "done" if done else "current" if current else "pending"})
    total = job.progress_total or 0
    return {
        "job_id": job.id, "project": project.name, "kind": job.kind, "status": job.status,
        "stale": stale, "stage": job.stage, "round": job.round, "progress_done": job.progress_done,
        "progress_total": total, "fraction": (job.progress_done / total) if total else 0.0, "eta_s": job.eta_s,
        "stop_requested": job.stop_requested, "error": job.error, "worker": job.worker,
        "heartbeat_age_s": beat_age, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "rounds_total": cfg.rounds if cfg else None,
        "stages_done": sum(s["state"] == "done" for s in plan), "stages_total": len(plan), "plan": plan,
        "round_status": {str(r): v.status for r, v in rounds.items()}, "config_yaml": job.config_yaml,
        "log": [{"id": e["id"], "at": e["at"], "level": e["level"], "message": e["message"]} for e in events],
    }


def jobs(db: str, project: str) -> list[dict]:
    with opened(db) as store:
        proj = store.project((project or "").strip())
        if proj is None:
            return []
        return [{"job_id": j.id, "kind": j.kind, "status": j.status, "stage": j.stage, "round": j.round,
                 "created_at": j.created_at} for j in store.jobs(proj.id)]


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


def approve_review(db: str, job_id: int, actor: str = "studio") -> dict:
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


# review ---------------------------------------------------------------------------------------------------

REVIEW_COLUMNS = ["id", "round", "⚑", "conf", "margin", "rank %", "label", "source", "prompt", "answer A",
                  "answer B"]
RANK_BANDS = {"lowest 10%": (None, 0.1), "lowest 25%": (None, 0.25), "lowest 50%": (None, 0.5),
              "top 50%": (0.5, None), "top 25%": (0.75, None), "top 10%": (0.9, None)}


@dataclass
class ReviewQuery:
    """The Review tab's filters, as the person set them (empty means any)."""
    round: int | None = None
    source: str | None = None  # one of LABEL_SOURCES
    flagged: bool | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    search: str = ""
    order: str = "uncertain"
    job_id: int | None = None
    rank_band: str | None = None  # one of RANK_BANDS: the within-round percentile of the judge's margin

    def filter(self, project_id: int, offset: int, limit: int) -> ReviewFilter:
        if self.source is not None and self.source not in LABEL_SOURCES:
            raise ActionError(f"label source must be one of {', '.join(LABEL_SOURCES)}")
        if self.order not in REVIEW_ORDERS:
            raise ActionError(f"order must be one of {', '.join(REVIEW_ORDERS)}")
        if self.rank_band is not None and self.rank_band not in RANK_BANDS:
            raise ActionError(f"rank must be one of {', '.join(RANK_BANDS)}")
        low, high = RANK_BANDS.get(self.rank_band, (None, None))
        return ReviewFilter(project_id=project_id, job_id=self.job_id, round=self.round, label_source=self.source,
                            noisy=self.flagged, min_confidence=self.min_confidence,
                            max_confidence=self.max_confidence, search=(self.search or "").strip(),
                            order=self.order, limit=limit, offset=offset, min_rank=low, max_rank=high)


@dataclass
class ReviewPage:
    rows: list[list]  # the displayed table, REVIEW_COLUMNS
    pair_ids: list[int]
    total: int
    page: int
    pages: int
    page_size: int
    offset: int


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def rank_percent(rank: float | None) -> str:
    return "" if rank is None else f"{100 * rank:.0f}"


def review_row(p: Pair, rank: float | None = None) -> list:
    return [p.id, p.round, "⚑" if p.noisy else "", _fmt(p.confidence), _fmt(p.margin), rank_percent(rank),
            p.label or "", p.label_source or "", _short(p.prompt[-1]["content"] if p.prompt else "", 90),
            _short(p.response_a, 70), _short(p.response_b, 70)]


def review_rows(store: Store, project_id: int, pairs: list[Pair]) -> list[list]:
    ranks = store.pair_ranks(project_id, [p.id for p in pairs])
    return [review_row(p, ranks.get(p.id)) for p in pairs]


def review_page(db: str, project: str, query: ReviewQuery, page: int = 0, page_size: int = 20,
                offset: int | None = None) -> ReviewPage:
    """One page of the review queue, flagged first then least confident by default, with its display rows.
    `offset` (rows to skip) overrides `page`. The UI callback, the API and the benchmark all call this."""
    page_size = max(1, min(int(page_size), 200))
    offset = max(0, int(page) * page_size if offset is None else int(offset))
    with opened(db) as store:
        proj = project_of(store, project)
        pairs, total = store.review_page(query.filter(proj.id, offset, page_size))
        rows = review_rows(store, proj.id, pairs)
    return ReviewPage(rows=rows, pair_ids=[p.id for p in pairs], total=total,
                      page=offset // page_size, pages=max(1, math.ceil(total / page_size)), page_size=page_size,
                      offset=offset)


def pair_detail(db: str, pair_id: int) -> dict:
    """A pair with everything the judge and the trainer said about it, its within-round rank (0-1) and its
    label history."""
    with opened(db) as store:
        pair = pair_of(store, pair_id)
        events = [asdict(e) for e in store.label_events(pair.id)]
        rank = store.pair_ranks(pair.project_id, [pair.id]).get(pair.id)
        cfg = job_config(store.job(pair.job_id))
    out = asdict(pair)
    out["events"] = events
    out["rank"] = rank
    out["instructions"] = instruction_checks(pair, cfg)
    return out


def instruction_checks(pair: Pair, cfg: RunConfig | None) -> dict | None:
    """For a pair of a text-world run: the prompt's IFEval instructions and which of them each answer follows
    ({"a": [...], "b": [...], "note": ...}, each check with instruction_id, description, strict, loose); None
    for any other pair."""
    if cfg is None or not uses_text_world(cfg):
        return None
    from engine.worlds.text_review import pair_checks
    from engine.worlds.text_world import default_text_dir

    return asdict(pair_checks(default_text_dir(), pair.prompt, pair.response_a, pair.response_b))


def resolve_label(pair: Pair, action: str) -> str:
    """The label an action means for this pair: keep confirms the label in force, flip prefers the other
    answer (of the label in force when it is a or b, else of the judge's)."""
    if action in LABELS:
        return action
    if action == "keep":
        if pair.label is None:
            raise ActionError(f"pair {pair.id} has no label to keep")
        return pair.label
    if action == "flip":
        base = pair.label if pair.label in ("a", "b") else pair.judge_label
        return "b" if base == "a" else "a"
    raise ActionError(f"unknown label {action!r}: use one of {', '.join(REVIEW_ACTIONS)}")


def written_label(pair: Pair, action: str) -> tuple[str, str]:
    """For a written better answer, which shown answer becomes its rejected partner, as the a/b label that
    export and training read (rejected = the answer the label does not prefer), and the audit note.

    The written answer is always the chosen one. Its partner is the answer the person's own a/b choice rejects
    (a/b pressed with it, or an earlier a/b label of theirs); without one, the answer the self-judge preferred:
    the model's best attempt, which the person replaced. A self label nobody confirmed is never carried over."""
    if action in ("a", "b"):
        preferred = action
    elif pair.label_source == "human" and pair.label in ("a", "b"):
        preferred = pair.label
    else:
        judge_pick = pair.judge_label if pair.judge_label in ("a", "b") else "a"
        preferred = "b" if judge_pick == "a" else "a"
    rejected = "B" if preferred == "a" else "A"
    return preferred, f"wrote a better answer; it is chosen, answer {rejected} is rejected"


def set_label(db: str, pair_id: int, label: str, human_response: str | None = None, note: str = "",
              actor: str = "studio") -> dict:
    """Label a pair as a person (audited in label_events). `label` is a, b, tie, both_bad, keep or flip; with
    a written better answer, the answer is chosen and `written_label` picks its rejected partner."""
    action = (label or "").strip().lower().replace(" ", "_")
    with opened(db) as store:
        pair = pair_of(store, pair_id)
        if human_response is not None:
            human_response = human_response.strip()
            if not human_response:
                raise ActionError("the better answer is empty")
            if action not in REVIEW_ACTIONS:
                raise ActionError(f"unknown label {label!r}: use one of {', '.join(REVIEW_ACTIONS)}")
            new, written_note = written_label(pair, action)
            note = note or written_note
        else:
            new = resolve_label(pair, action)
        event = store.set_label(pair.id, new, "human", actor=actor, human_response=human_response,
                                note=note or action)
        pair = store.pair(pair.id)
    return {"pair_id": pair.id, "label": pair.label, "label_source": pair.label_source,
            "human_response": pair.human_response, "event": asdict(event)}


def bulk_accept(db: str, project: str, min_confidence: float | None = None, round: int | None = None,
                actor: str = "studio", top: str | None = None) -> dict:
    """Accept, unread, every self label at or above a confidence, or in a top rank band of its round ("top 50%"):
    label source `accepted`, each pair audited. Training treats accepted pairs as self labels: a person did not
    read them, so they are not gold, may be flagged as noisy, and are not replayed in later rounds."""
    if min_confidence is None and top is None:
        raise ActionError("choose a confidence threshold or a rank band (top 50%, ...)")
    if min_confidence is not None and not 0.5 <= float(min_confidence) <= 1.0:
        raise ActionError("the confidence threshold must be between 0.5 and 1.0")
    if top is not None and (top not in RANK_BANDS or RANK_BANDS[top][0] is None):
        raise ActionError(f"bulk accept takes a top band: {', '.join(b for b in RANK_BANDS if b.startswith('top'))}")
    min_rank = RANK_BANDS[top][0] if top is not None else None
    with opened(db) as store:
        proj = project_of(store, project)
        n = store.bulk_accept(proj.id, None if min_confidence is None else float(min_confidence), round=round,
                              actor=actor, min_rank=min_rank)
    return {"accepted": n, "min_confidence": min_confidence, "top": top, "round": round}


def undo_last_label(db: str, project: str, actor: str = "studio") -> dict:
    """Revert the newest labelling action `actor` took in the project, whole: one label, or every pair of a bulk
    accept (audited as undo events). `pairs`: the pairs reverted; `kept`: pairs someone else labelled since."""
    with opened(db) as store:
        proj = project_of(store, project)
        undone = store.undo_last_label(proj.id, actor)
    if not undone.events:
        raise ActionError("nothing to undo")
    first = undone.events[0]
    return {"pair_id": first.pair_id, "label": first.new_label, "label_source": first.new_source,
            "undid": first.undoes, "pairs": [e.pair_id for e in undone.reverted],
            "kept": [e.pair_id for e in undone.kept], "action": undone.action_note}


def review_progress(db: str, project: str) -> list[dict]:
    """Per round: judged pairs, reviewed by a person, accepted in bulk, remaining."""
    with opened(db) as store:
        return store.review_progress(project_of(store, project).id)


def guidelines(db: str, project: str) -> str:
    with opened(db) as store:
        return project_of(store, project).guidelines or ""


def save_guidelines(db: str, project: str, text: str) -> str:
    with opened(db) as store:
        store.set_guidelines(project_of(store, project).id, (text or "").strip())
    return guidelines(db, project)


def examples_page(db: str, project: str, role: str, offset: int = 0, limit: int = 50) -> tuple[list[dict], int]:
    """Imported rows of one role (seed pairs, pool prompts, eval pairs), in import order, and their count."""
    if role not in ROLES:
        raise ActionError(f"role must be one of {', '.join(ROLES)}")
    with opened(db) as store:
        proj = project_of(store, project)
        rows = store.examples(proj.id, role, limit=limit, offset=max(0, int(offset)))
        total = store.count_examples(proj.id, role)
    return [{"line": f"{Path(ex.source_file).name}:{ex.source_line}", "prompt": _short(ex.prompt_text, 200),
             "chosen": _short(ex.chosen, 160), "rejected": _short(ex.rejected, 160)} for ex in rows], total


def next_offset(offset: int, page_size: int, changes: list[tuple[bool, str, bool]], query: ReviewQuery) -> int:
    """Where the next page starts after a person worked through a page. Labelling can move a pair out of the
    filtered, ordered list (a 'self' filter no longer matches a human label; a flagged pair loses its flag
    and sorts later), which shifts every later pair up: the next page starts that many rows earlier, so no
    pair is skipped. `changes` holds (was flagged, label source now, flagged now) per pair labelled."""
    moved = 0
    for was_flagged, source, flagged in changes:
        leaves = query.source is not None and source != query.source
        leaves |= query.flagged is True and not flagged
        unflagged = was_flagged and not flagged and query.order == "uncertain"
        moved += bool(leaves or unflagged)
    return max(offset + page_size - moved, 0)
