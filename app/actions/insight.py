"""What the Insight tab draws, read from storage and from a run's folder: per-round metrics (the text world's
IFEval figures beside each round's blind audit), the self-judge's calibration, its margins, answer lengths, the
stored generations, and π_init's and each round's stored answers to the held-out prompts. Nothing here samples a
model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from app.actions.audit import round_audit_row
from app.actions.job_queue import job_config
from app.actions.lookups import job_of, opened, project_of
from app.actions.paths import ROOT
from engine.config import RunConfig
from engine.data.report import RoundAudit, audit_estimates
from engine.runtime.run_folder import run_dir
from storage import Job, Pair


@dataclass
class ProjectInsight:
    """The Insight tab's charts of a project, for one of its runs or all of them (job_id None)."""

    jobs: list[Job]
    job_id: int | None  # the run asked for; None also when it is not one of the project's
    metrics_job: int | None  # whose per-round metrics are drawn: that run, else the project's newest job
    metrics: list[dict]
    calibration: list[dict]  # by confidence bin
    rank_calibration: list[dict]  # by within-round rank band
    margins: list[dict]  # the margin histogram
    lengths: list[dict]  # chosen vs rejected length per round
    rounds: list[int]
    label_counts: dict[str, int]
    ifeval: list[dict]  # per evaluated round of metrics_job, ifeval_rounds; empty outside the text world


# the text world's per-round IFEval figures on its held-out tasks (engine/worlds/text_eval.py), by row key
IFEVAL_METRICS = {
    "prompt_strict": "text/eval/prompt_strict",
    "instruction_loose": "text/eval/instruction_loose",
    "init_prompt_strict": "text/eval/init/prompt_strict",
    "init_instruction_loose": "text/eval/init/instruction_loose",
    "win_rate_vs_init": "text/eval/win_rate_vs_init",
}


def ifeval_rounds(metrics: list[dict], audits: dict[int, RoundAudit]) -> list[dict]:
    """Per round with IFEval figures (the latest value where a stage ran twice): prompt-level strict and
    instruction-level loose of the round's model and of π_init, the win rate over π_init by gold, and the round's
    blind audit (round_audit_row; None for a round without an audit sample, such as round 0)."""
    latest: dict[tuple[str, int], float] = {}
    for m in sorted(metrics, key=lambda m: m["id"] or 0):
        if m["round"] is not None:
            latest[(m["name"], m["round"])] = m["value"]
    rounds = sorted(r for name, r in latest if name == IFEVAL_METRICS["prompt_strict"])
    return [
        {"round": r}
        | {key: latest.get((name, r)) for key, name in IFEVAL_METRICS.items()}
        | {"audit": round_audit_row(audits[r]) if r in audits else None}
        for r in rounds
    ]


def project_insight(db: str, project: str, job_id: int | None) -> ProjectInsight:
    with opened(db) as store:
        proj = project_of(store, project)
        jobs = store.jobs(proj.id)
        if job_id not in {j.id for j in jobs}:
            job_id = None
        metrics_job = job_id if job_id is not None else (jobs[-1].id if jobs else None)
        metrics = [asdict(m) for m in store.metrics(metrics_job)] if metrics_job else []
        audits = audit_estimates(store, metrics_job) if metrics_job else {}
        return ProjectInsight(
            jobs=jobs,
            job_id=job_id,
            metrics_job=metrics_job,
            metrics=metrics,
            calibration=store.confidence_calibration(proj.id, job_id),
            rank_calibration=store.rank_calibration(proj.id, job_id),
            margins=store.margin_histogram(proj.id, job_id),
            lengths=store.length_by_round(proj.id, job_id),
            rounds=store.pair_rounds(proj.id, job_id),
            label_counts=store.label_source_counts(proj.id),
            ifeval=ifeval_rounds(metrics, audits),
        )


def _folder(cfg: RunConfig, db: str, job_id: int) -> Path:
    """run_dir, with a relative output_dir taken from the repository (where `launch.py run` writes it)."""
    out_dir = run_dir(cfg, db, job_id)
    return out_dir if out_dir.is_absolute() else ROOT / out_dir


def run_folder(db: str, job_id: int) -> Path | None:
    """Where a run writes its rounds and evaluations; None for a job without a valid run configuration."""
    with opened(db) as store:
        cfg = job_config(job_of(store, job_id))
    return _folder(cfg, db, job_id) if cfg is not None else None


def init_answers(db: str, job_id: int, limit: int = 10) -> list[list[str]]:
    """π_init's stored answers to the eval prompts (eval_init_samples.json in the run's folder), as
    [eval prompt, answer] rows; without that file (a world's own held-out prompts, such as the text world's),
    those of the run's first saved answers file (round_answers); none when the run saved none."""
    with opened(db) as store:
        job = job_of(store, job_id)
        cfg = job_config(job)
        evals = store.examples(job.project_id, "eval", limit=cfg.eval.max_prompts) if cfg else []
    if cfg is None:
        return []
    path = _folder(cfg, db, job_id) / "eval_init_samples.json"
    if not path.is_file():
        saved = round_answers(db, job_id)[:1]
        return [
            [" ".join(m["content"] for m in prompt), text]
            for rec in saved
            for prompt, text in zip(rec["prompts"], rec["init_texts"])
        ][:limit]
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))["texts"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [[e.prompt_text, t] for e, t in zip(evals, texts)][:limit]


def round_answers(db: str, job_id: int) -> list[dict]:
    """π_init's and each evaluated round's answers to the same held-out prompts, as the evaluate stage saved them
    (eval_answers_round_N.json, by round; each record with its "round"): prompts, texts, init_texts, gold and
    init_gold (None without a gold), judge and init_judge (the round's judge scores), checks and init_checks (the
    world's checks of each answer, the text world's IFEval instructions; None or absent elsewhere)."""
    folder = run_folder(db, job_id)
    if folder is None or not folder.is_dir():
        return []
    records = []
    for f in folder.glob("eval_answers_round_*.json"):
        try:
            round_ = int(f.stem.rsplit("_", 1)[1])
            records.append({"round": round_} | json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(records, key=lambda r: r["round"])


def round_samples(
    db: str, project: str, round_index: int, job_id: int | None, search: str, limit: int = 20
) -> list[Pair]:
    """The pairs a round generated, as labelled now (of one run, or of all the project's runs)."""
    with opened(db) as store:
        proj = project_of(store, project)
        return store.round_samples(proj.id, round_index, job_id=job_id, search=search or "", limit=limit)
