"""Named API endpoints, so gradio_client can script the studio:

    from gradio_client import Client, handle_file
    c = Client("http://127.0.0.1:7860/")
    c.predict(handle_file("seed.jsonl"), "my-project", "seed", api_name="/import_file")
    job = c.predict("my-project", open("configs/demo.yaml").read(), api_name="/queue_run")["job_id"]
    c.predict(job, api_name="/job_status")
    c.predict("my-project", api_name="/export_dataset")["file"]  # the dataset, downloaded

Where the studio has accounts, sign in with Client(url, auth=("ana", "password")): every label and decision the
client makes then carries "ana" (else "api"), and undo_last_label / undo_seed take back only ana's own.

preview_file and import_file take a file the client uploads (`handle_file(path)`, at most MAX_UPLOAD_MB) or a
path on the machine the studio runs on, read only under its data roots (the database's folder, Gradio's uploads,
SPA_DATA_ROOTS; checked after resolving links). Exports land under the export folder and come back as files the
client downloads (examples/remote_client.py goes through it all). Every endpoint returns JSON-ready values, where
no key named `path` appears but a file's (gradio_client downloads whatever a `path` names); a refused request
raises an error whose message says why (gradio_client's AppError)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gradio as gr
from gradio import FileData

from app import actions
from app.actions import ActionError, ReviewQuery
from app.security import API_ACTOR, actor_of

READS_CONCURRENCY = None  # no per-endpoint limit: Gradio's thread pool (40) bounds them
SEED_DECISIONS = "seed-decisions"  # the concurrency group of every seed decision, the API's and the seed view's


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ActionError as e:
        raise gr.Error(str(e), print_exception=False) from None


def _handed_out(download: actions.Download) -> dict:
    """A download as the client sees it: `file` and `card` as Gradio file data, which gradio_client fetches."""
    return {
        "what": download.what,
        "job_id": download.job_id,
        "out": download.out,
        "file": FileData(path=download.file, orig_name=Path(download.file).name).model_dump(),
        "card": FileData(path=download.card, orig_name=Path(download.card).name).model_dump(),
    }


def register(db: str, people: tuple[str, ...] = ()) -> None:
    """Add the endpoints to the Blocks being built. `people`: the accounts that may sign in (none without
    authentication). Every endpoint that labels or decides records the signed-in person (gr.Request.username;
    "api" where the studio runs without authentication)."""

    def whoami(request: gr.Request) -> dict:
        """Who this client is signed in as (person: the name its labels carry; "api" without authentication)
        and every account of the studio (people; empty without authentication)."""
        return {"person": actor_of(request, API_ACTOR), "people": list(people)}

    accounts = tuple(people)  # assign_review's own `people` are the names it is given

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

    def preview_file(file: str | FileData, role: str) -> dict:
        """Validate a data file as seed, pool or eval without importing: format, rows, first rows, problems. file:
        handle_file(path) (an upload) or a path on the studio's machine under its data roots."""

        def preview():
            path, name = actions.received_file(db, file)
            return actions.preview_import(path, role, name)

        return asdict(_call(preview))

    def import_file(file: str | FileData, project: str, role: str) -> dict:
        """Validate and import a data file (seed | pool | eval), all or nothing; file as for preview_file. ok is false
        and issues lists every problem (file, line, field, message) when nothing was imported: a file over the
        studio's limit (MAX_UPLOAD_MB) or not a data file among them."""

        def load():
            path, name = actions.received_file(db, file)
            return actions.import_file(db, path, project, role, name)

        return asdict(_call(load))

    def imported_rows(project: str, role: str, page: int = 0, page_size: int = 50) -> dict:
        """One page of the project's imported rows of a role (seed | pool | eval), in import order: total, pages and
        rows (id, file, line, prompt as chat messages, chosen, rejected; None where a row has no answer)."""
        return _call(actions.imported_rows, db, project, role, page, page_size)

    def save_config(project: str, name: str, config_yaml: str) -> dict:
        """Validate and save a run configuration; returns its id, name, yaml, the saved file on the studio's machine
        (`file`, a plain string) and the equivalent command."""
        saved = _call(actions.save_config, db, project, name, config_yaml)
        return {key: value for key, value in saved.items() if key != "path"} | {"file": saved["path"]}

    def queue_run(project: str, config_yaml: str) -> dict:
        """Validate a run configuration and queue a run of the project with it; returns the job id."""
        return _call(actions.queue_run, db, project, config_yaml)

    def list_jobs(project: str) -> list[dict]:
        """The project's jobs, oldest first."""
        return actions.jobs(db, project)

    def job_status(job_id: int) -> dict:
        """A job's status, stage, round, progress counts, ETA, stage plan and last log lines."""
        return _call(actions.job_status, db, job_id)

    def job_log(job_id: int, lines: int = 50, after: int = 0) -> dict:
        """The last `lines` lines of a job's log (at most 2000; only those after line id `after`, to follow it): lines
        (id, at, level, message) and text, one line each."""
        return _call(actions.job_log, db, job_id, lines, after)

    def export_dataset(
        project: str,
        format: str = "jsonl",
        out: str = "",
        sources: list[str] | None = None,
        min_confidence: float | None = None,
        exclude_noisy: bool = False,
        seed_ordered_pairs: bool = False,
        rounds: list[int] | None = None,
        job_id: int | None = None,
        force: bool = False,
    ) -> dict:
        """Export the grown dataset (TRL prompt/chosen/rejected with provenance) as the Export tab does, and download
        it: `file` is the data file (train.jsonl or train.parquet; format hf: the datasets folder as a zip), `card`
        its README; `out` the folder on the studio's machine (relative to the export folder and inside it; empty: a
        new exports/PROJECT/dataset-TIME). Refused with nothing written: an unknown project, run or source, no pair
        left by the filters, a folder outside the export folder or not empty (unless force)."""
        req = _call(
            actions.export_request,
            db,
            project,
            "dataset",
            out,
            format=format,
            sources=list(sources) if sources else None,
            min_confidence=min_confidence,
            exclude_noisy=bool(exclude_noisy),
            seed_ordered_pairs=bool(seed_ordered_pairs),
            rounds=list(rounds) if rounds else None,
            job_id=job_id,
            force=bool(force),
        )
        return _handed_out(_call(actions.dataset_download, db, req))

    def export_model(
        project: str,
        what: str = "model",
        round: int | None = None,
        job_id: int | None = None,
        out: str = "",
        force: bool = False,
    ) -> dict:
        """Queue an export of a run's merged model (what "model") or LoRA adapter ("adapter"): round (default the
        last) of run job_id (default the project's latest run with a saved model), into out (as for export_dataset).
        A job, since it loads weights: follow it with job_status, then fetch its zip with download_export. Refused
        with nothing queued: an unknown project, run or round, an adapter of a full fine-tune, a bad folder."""
        req = _call(actions.export_request, db, project, what, out, round=round, job_id=job_id, force=bool(force))
        export_job = _call(actions.queue_model_export, db, req)
        return {"job_id": export_job, "status": "queued", "what": req.what, "out": req.out}

    def download_export(job_id: int) -> dict:
        """A finished model or adapter export (export_model's job_id) as a zip (`file`) and its model card (`card`);
        refused, saying the job's state, until the job is done."""
        return _handed_out(_call(actions.model_download, db, job_id))

    def job_metrics(job_id: int) -> list[dict]:
        """Every metric a job recorded (name, step, round, value)."""
        return _call(actions.run_metrics, db, job_id)

    def stop_run(job_id: int) -> dict:
        """Stop a job: a running one at its next step, a queued or paused one at once."""
        return _call(actions.stop_run, db, job_id)

    def resume_run(job_id: int) -> dict:
        """Queue a stopped, interrupted or failed job again, to continue after its last completed stage."""
        return _call(actions.resume_run, db, job_id)

    def approve_review(job_id: int, request: gr.Request) -> dict:
        """Let a job paused at its review gate go on to train."""
        return _call(actions.approve_review, db, job_id, actor_of(request, API_ACTOR))

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
        mine: bool = False,
        todo: bool = False,
        request: gr.Request | None = None,
    ) -> dict:
        """One page of the review queue (flagged first, then least confident, by default) with its filters;
        rank is a within-round band of the judge's margin: lowest 10% ... top 10%. order "audit": the round's blind
        audit sample in draw order, where `blind` lists the pairs not yet answered, whose rows hide the judge's
        numbers and the label in force. mine: only the pairs assigned to the caller (assign_review), each with the
        caller's own label (else the judge's) instead of someone else's; todo: of those, the ones not yet labelled
        by the caller."""
        query = ReviewQuery(
            round=round,
            source=source or None,
            flagged=flagged,
            min_confidence=min_confidence,
            max_confidence=max_confidence,
            search=search or "",
            order=order or "uncertain",
            rank_band=rank or None,
            person=actor_of(request, API_ACTOR) if mine else None,
            todo=bool(todo),
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
        pair_id: int,
        label: str,
        human_response: str | None = None,
        note: str = "",
        via: str = "review",
        request: gr.Request | None = None,
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
            actor=actor_of(request, API_ACTOR),
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
        project: str,
        min_confidence: float | None = None,
        round: int | None = None,
        top: str | None = None,
        request: gr.Request | None = None,
    ) -> dict:
        """Accept, unread, every self label at or above a confidence or in a top rank band of its round
        ("top 50%"): label source `accepted`, trained as self labels, each pair audited."""
        return _call(
            actions.bulk_accept,
            db,
            project,
            min_confidence,
            round=round,
            actor=actor_of(request, API_ACTOR),
            top=top or None,
        )

    def undo_last_label(project: str, request: gr.Request) -> dict:
        """Revert the newest labelling action the signed-in person took in the project, whole (a bulk accept is one
        action), never another person's; audited as undo events. pairs: the pairs reverted; kept: pairs someone
        else has labelled since."""
        return _call(actions.undo_last_label, db, project, actor_of(request, API_ACTOR))

    def review_progress(project: str, mine: bool = False, request: gr.Request | None = None) -> list[dict]:
        """Per round: judged pairs, reviewed by a person, accepted in bulk, remaining. mine: the caller's own
        progress instead, per run and round they have pairs assigned in: assigned, labelled, remaining."""
        if mine:
            return _call(actions.person_progress, db, project, actor_of(request, API_ACTOR))
        return _call(actions.review_progress, db, project)

    def assign_review(
        project: str, round: int, people: list[str], overlap: int = 0, job_id: int | None = None
    ) -> dict:
        """Split a round's review queue among named people: each judged pair of the round (of run job_id, default
        the project's newest run with that round) to overlap + 1 different people, balanced and deterministic,
        replacing the round's assignment; labels are kept, and a pair stays with the people who labelled it. Returns
        job_id, round, pairs, overlap, people {name: pairs assigned} and kept. Where the studio has accounts, every
        name must be one."""
        return _call(actions.assign_review, db, project, round, people, overlap, job_id, accounts)

    def reviewer_agreement(project: str, job_id: int | None = None, round: int | None = None) -> dict:
        """How often people agree on the pairs two or more labelled (each one's latest label; a, b, tie and both_bad
        as four answers): pairwise n, agree and Cohen's kappa; alpha, Krippendorff's α, with three or more people;
        with_judge, each person's agreement with the self-judge (a/b answers, Wilson 95% lo-hi; ties and both_bad
        apart). Of the project, or of one run (job_id) and round."""
        return _call(actions.reviewer_agreement, db, project, job_id, round)

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

    def rank_seed(
        project: str, example_id: int, best_answer_id: int, worst_answer_id: int, request: gr.Request
    ) -> dict:
        """Rank a seed prompt: the best and the worst of its answers (answer ids from seed_prompt); the prompt
        becomes one seed pair (label source human). Returns the ranking, next_example_id and progress."""
        return _call(
            actions.rank_seed, db, project, example_id, best_answer_id, worst_answer_id, actor_of(request, API_ACTOR)
        )

    def write_seed_answer(project: str, example_id: int, text: str, worst_answer_id: int, request: gr.Request) -> dict:
        """Write a better answer for a seed prompt: stored among its answers and ranked best, with worst_answer_id
        the worst. Returns the ranking, next_example_id and progress."""
        return _call(
            actions.write_seed_answer, db, project, example_id, text, worst_answer_id, actor_of(request, API_ACTOR)
        )

    def mark_seed(project: str, example_id: int, status: str, request: gr.Request) -> dict:
        """Mark a seed prompt "equal" (its answers are all alike: no pair comes of it) or "skip" (leave it out of
        the seed). Returns the decision, next_example_id and progress."""
        return _call(actions.mark_seed, db, project, example_id, status, actor_of(request, API_ACTOR))

    def undo_seed(project: str, request: gr.Request) -> dict:
        """Take back the signed-in person's newest seed decision in the project (rank, write, equal or skip; a written
        answer stays among the prompt's answers). undone is None when there is none left."""
        return _call(actions.undo_seed, db, project, actor_of(request, API_ACTOR))

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
        whoami,
        list_projects,
        project_summary,
        preview_file,
        list_jobs,
        job_status,
        job_log,
        job_metrics,
        imported_rows,
        review_page,
        get_pair,
        review_progress,
        reviewer_agreement,
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
        export_dataset,
        export_model,
        download_export,
        save_config,
        queue_run,
        stop_run,
        resume_run,
        approve_review,
        set_label,
        bulk_accept,
        undo_last_label,
        assign_review,
        queue_seed_answers,
        judge_check,
    ):
        gr.api(fn, api_name=fn.__name__)
    # a person's seed decisions one at a time, as the seed view's are: an undo never overtakes the decision before it
    for fn in (rank_seed, write_seed_answer, mark_seed, undo_seed):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=1, concurrency_id=SEED_DECISIONS)
