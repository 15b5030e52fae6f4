"""Export entry points: what a project offers (`exportable`) and `export` itself, which checks the request,
the project, the run and the destination before it writes anything, then stages the write (staging): a run's
LoRA adapter or merged model (model), or the grown preference dataset (dataset), each with a card (cards)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import ConfigError, RunConfig, run_config_of
from engine.data.export.dataset import auto_judges, dataset_rows, write_dataset
from engine.data.export.model import write_adapter, write_merged
from engine.data.export.records import FORMATS, WHATS, ExportError, ExportRequest, Progress, RunCard, RunModel
from engine.data.export.staging import check_empty, destination, refuse_protected, staging
from engine.data.report import round_rows
from storage import Artifact, Job, Project, Store
from storage.records import LABEL_SOURCES


def exportable(db: str | Path, project: str) -> list[dict]:
    """Every round of every run that a model (and, with LoRA, an adapter) can be exported from, newest run first."""
    store = _open(db)
    try:
        proj = _project(store, project)
        out = []
        for job in reversed(store.jobs(proj.id)):
            out += [m.as_dict() for m in _run_models(store, proj.id, job.id)]
        return out
    finally:
        store.close()


def export(db: str | Path, req: ExportRequest, progress: Progress | None = None) -> Path:
    """Write what `req` asks for under `req.out` and return the folder. Refuses (ExportError) before writing
    anything when the request, the project, the run or the destination is wrong."""
    report = progress or (lambda stage, done, total: None)
    _check_request(req)
    out = destination(req.out, req.root)
    store = _open(db)
    try:
        proj = _project(store, req.project)
        if req.what == "dataset":
            rows, conversational = dataset_rows(store, proj, req, report)
            refuse_protected(out, [Path(db)])
            check_empty(out, req.force)
            with staging(out, req.force) as tmp:
                write_dataset(tmp, rows, conversational, req, proj, report, auto_judges(store, rows))
            return out
        chosen = _checked_model(store, proj.id, req, out, Path(db))
        card = _run_card(store, proj, chosen)
        with staging(out, req.force) as tmp:
            if req.what == "adapter":
                write_adapter(tmp, chosen, card, report)
            else:
                write_merged(tmp, chosen, card, req.max_shard_size, report)
        return out
    finally:
        store.close()


def check_model_export(db: str | Path, req: ExportRequest) -> RunModel:
    """What a model or adapter export would read, after every check `export` makes before it writes (the request,
    the project, the run and its round, the destination), writing nothing: a queued export is refused at once, not
    when the worker gets to it."""
    _check_request(req)
    if req.what == "dataset":
        raise ExportError("a dataset export runs at once: call export")
    out = destination(req.out, req.root)
    store = _open(db)
    try:
        return _checked_model(store, _project(store, req.project).id, req, out, Path(db))
    finally:
        store.close()


def _checked_model(store: Store, project_id: int, req: ExportRequest, out: Path, db: Path) -> RunModel:
    chosen = _pick_model(store, project_id, req)
    refuse_protected(out, [db, Path(chosen.path), Path(chosen.base_model)])
    check_empty(out, req.force)
    return chosen


# the request, the project and the run


def _check_request(req: ExportRequest) -> None:
    if req.what not in WHATS:
        raise ExportError(f"what must be one of {', '.join(WHATS)}, got {req.what!r}")
    if req.what == "dataset":
        if req.format not in FORMATS:
            raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {req.format!r}")
        if req.round is not None:
            raise ExportError(
                "round picks a model's round; to choose a dataset's rounds use rounds=[...] "
                "(--rounds on the command line)"
            )
        unknown = sorted(set(req.sources or []) - set(LABEL_SOURCES))
        if unknown:
            raise ExportError(f"unknown source(s) {', '.join(unknown)}; use {', '.join(LABEL_SOURCES)}")
        if req.min_confidence is not None and not 0 <= req.min_confidence <= 1:
            raise ExportError(f"min_confidence must be between 0 and 1, got {req.min_confidence}")
    elif req.rounds or req.sources or req.min_confidence is not None or req.exclude_noisy:
        raise ExportError(
            "rounds, sources, min_confidence and exclude_noisy filter a dataset export; "
            f"they mean nothing for --what {req.what}"
        )


def _open(db: str | Path) -> Store:
    """Opening a Store creates a missing database; an export must not leave an empty one behind a typo."""
    if not Path(db).is_file():
        raise ExportError(f"no database at {db}")
    return Store(db)


def _project(store: Store, name: str) -> Project:
    proj = store.project(name)
    if proj is None:
        known = ", ".join(p.name for p in store.projects()) or "none"
        raise ExportError(f"no project named {name!r} (projects: {known})")
    return proj


def _run_models(store: Store, project_id: int, job_id: int) -> list[RunModel]:
    """A LoRA run exports from its per-round adapters (its merged `final` folder is the last one merged);
    a full fine-tune from its per-round weights. A stage that ran twice registered twice: the latest wins."""
    arts = store.artifacts(project_id, job_id=job_id)
    kind = "adapter" if any(a.kind == "adapter" for a in arts) else "model"
    latest: dict[int, Artifact] = {}
    for a in arts:
        if a.kind == kind and a.round is not None:
            latest[a.round] = a
    return [RunModel(job_id, r, kind, a.path, _base_model(store, job_id, a)) for r, a in sorted(latest.items())]


def _base_model(store: Store, job_id: int, art: Artifact) -> str:
    if art.meta.get("base_model"):
        return str(art.meta["base_model"])
    adapter_config = Path(art.path) / "adapter_config.json"
    if adapter_config.is_file():
        found = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if found:
            return str(found)
    cfg = _run_config(store.job(job_id))
    return cfg.model if cfg is not None else ""


def _run_config(job: Job) -> RunConfig | None:
    """The run's configuration, for the card; a config that no longer validates only costs the card its details."""
    try:
        return run_config_of(job) if job.config_yaml else None
    except ConfigError:
        return None


def _pick_model(store: Store, project_id: int, req: ExportRequest) -> RunModel:
    if req.job_id is not None:
        if req.job_id not in {j.id for j in store.jobs(project_id)}:
            raise ExportError(f"run {req.job_id} is not a run of project {req.project!r}")
        candidates = _run_models(store, project_id, req.job_id)
        if not candidates:
            raise ExportError(f"run {req.job_id} has no saved model yet")
    else:
        candidates = []
        for job in reversed(store.jobs(project_id)):
            candidates = _run_models(store, project_id, job.id)
            if candidates:
                break
        if not candidates:
            raise ExportError(f"project {req.project!r} has no run with a saved model yet")
    job_id = candidates[0].job_id
    if req.what == "adapter" and candidates[0].kind != "adapter":
        raise ExportError(
            f"run {job_id} is a full fine-tune: it has no LoRA adapter to export; "
            "export --what model to get its weights"
        )
    if req.round is None:
        chosen = candidates[-1]
    else:
        by_round = {m.round: m for m in candidates}
        if req.round not in by_round:
            raise ExportError(
                f"run {job_id} has no saved model for round {req.round} "
                f"(rounds: {', '.join(str(r) for r in sorted(by_round))})"
            )
        chosen = by_round[req.round]
    if not Path(chosen.path).is_dir():
        raise ExportError(f"the saved {chosen.kind} of run {job_id} round {chosen.round} is missing: {chosen.path}")
    if not chosen.base_model and chosen.kind == "adapter":
        raise ExportError(f"run {job_id} does not say which base model its adapter belongs to")
    return chosen


def _run_card(store: Store, proj: Project, chosen: RunModel) -> RunCard:
    cfg = _run_config(store.job(chosen.job_id))
    counts: dict[str, int] = {}
    for ex in store.seed_pairs(proj.id):
        counts[ex.label_source] = counts.get(ex.label_source, 0) + 1
    for p in store.as_trained(store.pairs(chosen.job_id)):
        if p.round <= chosen.round and p.label in ("a", "b") and p.label_source:
            counts[p.label_source] = counts.get(p.label_source, 0) + 1
    metrics = {row.round: row.values for row in round_rows(store, chosen.job_id) if row.round <= chosen.round}
    return RunCard(proj.name, chosen.job_id, chosen.round, chosen.base_model, cfg, counts, metrics)


# the destination


# models


# datasets


# cards
