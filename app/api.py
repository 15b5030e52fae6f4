"""Named API endpoints, so gradio_client can script the studio:

    from gradio_client import Client
    c = Client("http://127.0.0.1:7860/")
    c.predict("seed.jsonl", "my-project", "seed", api_name="/import_file")
    job = c.predict("my-project", open("configs/demo.yaml").read(), api_name="/queue_run")["job_id"]
    c.predict(job, api_name="/job_status")

Paths given to preview_file and import_file are read on the machine the studio runs on, only under its
data roots (the database's folder, Gradio's uploads, SPA_DATA_ROOTS; checked after resolving links). Every
endpoint returns JSON-ready values; a refused request raises an error whose message says why (gradio_client's
AppError)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gradio as gr

from app import actions
from app.actions import ActionError, ReviewQuery

READS_CONCURRENCY = None  # no per-endpoint limit: Gradio's thread pool (40) bounds them


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ActionError as e:
        raise gr.Error(str(e), print_exception=False) from None


def register(db: str) -> None:
    """Add the endpoints to the Blocks being built."""

    def list_projects() -> list[str]:
        """Names of every project."""
        return actions.project_names(db)

    def create_project(name: str, model: str = "") -> dict:
        """Create a project (or open it; a non-empty model updates its model)."""
        return _call(actions.create_project, db, name, model)

    def open_text_demo() -> dict:
        """Open the demo project "Instruction following, SmolLM2-135M" (text-demo): created on first use, its
        text world set up by a background job (job_id; queued false when its rows are already imported)."""
        return _call(actions.open_text_demo, db)

    def project_summary(project: str) -> dict:
        """Example counts per role, label counts per source and the number of runs of a project."""
        return _call(actions.project_summary, db, project)

    def preview_file(path: str, role: str) -> dict:
        """Validate a data file as seed, pool or eval without importing: format, rows, first rows, problems."""
        return asdict(_call(lambda: actions.preview_import(actions.readable_path(db, path), role, Path(path).name)))

    def import_file(path: str, project: str, role: str) -> dict:
        """Validate and import a data file (seed | pool | eval), all or nothing. ok is false and issues lists
        every problem (file, line, field, message) when nothing was imported."""
        return asdict(
            _call(lambda: actions.import_file(db, actions.readable_path(db, path), project, role, Path(path).name))
        )

    def save_config(project: str, name: str, config_yaml: str) -> dict:
        """Validate and save a run configuration; returns its id, file path and the equivalent command."""
        return _call(actions.save_config, db, project, name, config_yaml)

    def queue_run(project: str, config_yaml: str) -> dict:
        """Validate a run configuration and queue a run of the project with it; returns the job id."""
        return _call(actions.queue_run, db, project, config_yaml)

    def list_jobs(project: str) -> list[dict]:
        """The project's jobs, oldest first."""
        return actions.jobs(db, project)

    def job_status(job_id: int) -> dict:
        """A job's status, stage, round, progress counts, ETA, stage plan and last log lines."""
        return _call(actions.job_status, db, job_id)

    def job_metrics(job_id: int) -> list[dict]:
        """Every metric a job recorded (name, step, round, value)."""
        return _call(actions.run_metrics, db, job_id)

    def stop_run(job_id: int) -> dict:
        """Stop a job: a running one at its next step, a queued or paused one at once."""
        return _call(actions.stop_run, db, job_id)

    def resume_run(job_id: int) -> dict:
        """Queue a stopped, interrupted or failed job again, to continue after its last completed stage."""
        return _call(actions.resume_run, db, job_id)

    def approve_review(job_id: int) -> dict:
        """Let a job paused at its review gate go on to train."""
        return _call(actions.approve_review, db, job_id, "api")

    def review_page(
        project: str,
        page: int = 0,
        page_size: int = 20,
        round: int | None = None,
        source: str | None = None,
        flagged: bool | None = None,
        min_confidence: float | None = None,
        max_confidence: float | None = None,
        search: str = "",
        order: str = "uncertain",
        rank: str | None = None,
    ) -> dict:
        """One page of the review queue (flagged first, then least confident, by default) with its filters;
        rank is a within-round band of the judge's margin: lowest 10% ... top 10%."""
        query = ReviewQuery(
            round=round,
            source=source or None,
            flagged=flagged,
            min_confidence=min_confidence,
            max_confidence=max_confidence,
            search=search or "",
            order=order or "uncertain",
            rank_band=rank or None,
        )
        result = _call(actions.review_page, db, project, query, page, page_size)
        return {
            "total": result.total,
            "page": result.page,
            "pages": result.pages,
            "page_size": result.page_size,
            "columns": actions.REVIEW_COLUMNS,
            "rows": result.rows,
            "pair_ids": result.pair_ids,
        }

    def get_pair(pair_id: int) -> dict:
        """A pair with its responses, the judge's numbers, its label and its label history (label_events)."""
        return _call(actions.pair_detail, db, pair_id)

    def set_label(pair_id: int, label: str, human_response: str | None = None, note: str = "") -> dict:
        """Label a pair as a person: a, b, tie, both_bad, keep (confirm) or flip. Audited in label_events."""
        return _call(
            actions.set_label, db, pair_id, label, human_response=human_response or None, note=note, actor="api"
        )

    def bulk_accept(
        project: str, min_confidence: float | None = None, round: int | None = None, top: str | None = None
    ) -> dict:
        """Accept, unread, every self label at or above a confidence or in a top rank band of its round
        ("top 50%"): label source `accepted`, trained as self labels, each pair audited."""
        return _call(actions.bulk_accept, db, project, min_confidence, round=round, actor="api", top=top or None)

    def undo_last_label(project: str) -> dict:
        """Revert the newest labelling action the API took in the project, whole (a bulk accept is one action);
        audited as undo events. pairs: the pairs reverted; kept: pairs someone else has labelled since."""
        return _call(actions.undo_last_label, db, project, "api")

    def review_progress(project: str) -> list[dict]:
        """Per round: judged pairs, reviewed by a person, accepted in bulk, remaining."""
        return _call(actions.review_progress, db, project)

    def judge_check(project: str, config: str = "") -> dict:
        """Queue a check of the self-judge on the project's own labels: each judge variant's agreement with its
        labelled pairs, by cross-fitting seed DPO (config: a saved configuration's name or YAML; empty: the latest)."""
        return _call(actions.queue_judge_check, db, project, config)

    def judge_check_result(project: str) -> dict | None:
        """The project's latest self-judge check: status, progress, error and, once done, {"judges": {NAME: {"agree",
        "lo", "hi", "n"}}, "chosen": NAME, "minutes": m}; None when it has none."""
        return _call(actions.judge_check_result, db, project)

    # Reads run side by side without a limit (each opens its own connection; SQLite's WAL lets readers go on while
    # one writer writes); writes keep the studio's default limit per endpoint and are safe by their transactions.
    for fn in (
        list_projects,
        project_summary,
        preview_file,
        list_jobs,
        job_status,
        job_metrics,
        review_page,
        get_pair,
        review_progress,
        judge_check_result,
    ):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=READS_CONCURRENCY)
    for fn in (
        create_project,
        open_text_demo,
        import_file,
        save_config,
        queue_run,
        stop_run,
        resume_run,
        approve_review,
        set_label,
        bulk_accept,
        undo_last_label,
        judge_check,
    ):
        gr.api(fn, api_name=fn.__name__)
