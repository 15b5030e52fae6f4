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
SEED_DECISIONS = "seed-decisions"  # the concurrency group of every seed decision, the API's and the seed view's


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
        rank is a within-round band of the judge's margin: lowest 10% ... top 10%. order "audit": the round's blind
        audit sample in draw order, where `blind` lists the pairs not yet answered, whose rows hide the judge's
        numbers and the label in force."""
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
            "blind": result.blind,
            "total": result.total,
            "page": result.page,
            "pages": result.pages,
            "page_size": result.page_size,
            "columns": actions.REVIEW_COLUMNS,
            "rows": result.rows,
            "pair_ids": result.pair_ids,
        }

    def get_pair(pair_id: int, order: str = "") -> dict:
        """A pair with its responses, the judge's numbers, its label and its label history (label_events). With
        order "audit", an audit pair not yet answered comes blind (the judge's fields and label None, blind true)."""
        return _call(actions.pair_detail, db, pair_id, order or "")

    def set_label(
        pair_id: int, label: str, human_response: str | None = None, note: str = "", via: str = "review"
    ) -> dict:
        """Label a pair as a person: a, b, tie, both_bad, keep (confirm) or flip. Audited in label_events.
        via "audit": answered blind in the audit order (the audit's estimate counts a pair's first such answer)."""
        return _call(
            actions.set_label,
            db,
            pair_id,
            label,
            human_response=human_response or None,
            note=note,
            actor="api",
            via=via or "review",
        )

    def audit_estimate(project: str = "", job_id: int | None = None, round_index: int | None = None) -> dict:
        """The blind audit of a run (job_id, or the project's newest audited run): per round (or round_index) the
        self-judge's agreement with the person's blind answers, agree with its 95% Wilson interval lo-hi, n decided
        answers, ties and both_bad apart, sample and answered, covers_half; and warning, the Run tab's text when
        the latest round's interval includes 0.5. Labels given outside the audit order never count."""
        return _call(actions.audit_estimate, db, project or None, job_id, round_index)

    def run_insight(project: str, job_id: int | None = None) -> dict:
        """What the Insight tab shows of a run (job_id, else the project's newest job): ifeval, per evaluated round
        of a text-world run, prompt_strict, instruction_loose, init_prompt_strict, init_instruction_loose,
        win_rate_vs_init and the round's blind audit (as audit_estimate's rows; None without one); and answers,
        π_init's and each round's saved answers to the held-out prompts ({"round", "prompts", "texts", "init_texts",
        "gold", "init_gold", "judge", "init_judge", "checks", "init_checks"}: checks per answer are the world's
        instruction checks, {"instruction_id", "description", "strict", "loose"}, or None)."""
        seen = _call(actions.project_insight, db, project, job_id)
        job = seen.job_id if seen.job_id is not None else seen.metrics_job
        return {"job_id": job, "ifeval": seen.ifeval, "answers": _call(actions.round_answers, db, job) if job else []}

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

    def queue_seed_answers(project: str, samples: int = 4, config: str = "") -> dict:
        """Queue a seed-answers job: `samples` answers (default 4) per seed prompt that has none, from the model of
        the project's latest saved configuration (or the saved one `config` names). Returns job_id, samples, prompts
        and model; follow it with job_status, stop_run and resume_run. Refused when the project has no seed prompts
        without answers or a sampling job is under way."""
        return _call(actions.queue_seed_answers, db, project, samples, config or "")

    def seed_prompt(project: str, example_id: int | None = None, after: int | None = None) -> dict:
        """One seed prompt: the one example_id names, else the next with answers and no decision after the prompt
        `after`. Returns example_id (None when none is left), prompt (messages), answers (id, position, text, logp,
        tokens, source, checks: the world's instruction checks or None), ranking (the decision in force) and
        progress."""
        return _call(actions.seed_prompt, db, project, example_id, after)

    def rank_seed(project: str, example_id: int, best_answer_id: int, worst_answer_id: int) -> dict:
        """Rank a seed prompt: the best and the worst of its answers (answer ids from seed_prompt); the prompt
        becomes one seed pair (label source human). Returns the ranking, next_example_id and progress."""
        return _call(actions.rank_seed, db, project, example_id, best_answer_id, worst_answer_id, "api")

    def write_seed_answer(project: str, example_id: int, text: str, worst_answer_id: int) -> dict:
        """Write a better answer for a seed prompt: stored among its answers and ranked best, with worst_answer_id
        the worst. Returns the ranking, next_example_id and progress."""
        return _call(actions.write_seed_answer, db, project, example_id, text, worst_answer_id, "api")

    def mark_seed(project: str, example_id: int, status: str) -> dict:
        """Mark a seed prompt "equal" (its answers are all alike: no pair comes of it) or "skip" (leave it out of
        the seed). Returns the decision, next_example_id and progress."""
        return _call(actions.mark_seed, db, project, example_id, status, "api")

    def undo_seed(project: str) -> dict:
        """Take back the newest seed decision the API made in the project (rank, write, equal or skip; a written
        answer stays among the prompt's answers). undone is None when there is none left."""
        return _call(actions.undo_seed, db, project, "api")

    def seed_progress(project: str) -> dict:
        """Where the project's seed stands: uploaded_pairs, prompts, without_answers, unranked, ranked, equal,
        skipped, and seed_pairs (what the seed round trains on)."""
        return _call(actions.seed_progress, db, project)

    def seed_pairs(project: str) -> list[dict]:
        """The seed pairs made of ranked prompts (example_id, prompt, best, worst, who, when), in prompt order."""
        return _call(actions.seed_pair_rows, db, project)

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
        seed_prompt,
        seed_progress,
        seed_pairs,
        audit_estimate,
        run_insight,
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
        queue_seed_answers,
        judge_check,
    ):
        gr.api(fn, api_name=fn.__name__)
    # a person's seed decisions one at a time, as the seed view's are: an undo never overtakes the decision before it
    for fn in (rank_seed, write_seed_answer, mark_seed, undo_seed):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=1, concurrency_id=SEED_DECISIONS)
