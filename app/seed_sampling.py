"""The Project tab's seed-sampling section: how many of the seed prompts still need answers or a ranking, and the
button that queues the `seed-answers` job (its progress drawn as every job's)."""

from __future__ import annotations

import gradio as gr

from app import actions
from app.actions import ActionError
from app.run_tab import progress_html

MAX_SAMPLES = 8  # the sampling button's most answers per prompt: room for written answers beside them
POLL_S = 1.5


def sampling_md(p: dict | None, job: dict | None) -> str:
    """The Project tab's line on the seed prompts: what they need before a run."""
    if not p or not p["prompts"]:
        return ""
    head = f"**{p['prompts']} seed prompts: {p['ranked']} ranked**"
    if job is not None and job["status"] in actions.ACTIVE:
        return f"{head} — answers are being sampled (below); then rank them in **Review ▸ Seed**."
    if p["without_answers"] == p["prompts"]:
        return f"{head} — sample answers and rank them in **Review ▸ Seed** before a run."
    if p["without_answers"]:
        return (
            f"{head} — {p['without_answers']} still have no answers: sample them, and rank the rest in "
            f"**Review ▸ Seed**."
        )
    if p["unranked"]:
        return (
            f"{head} — {p['unranked']} to rank in **Review ▸ Seed**; the seed round trains on {p['seed_pairs']} pairs."
        )
    return f"{head}, {p['equal']} equal, {p['skipped']} skipped — the seed round trains on {p['seed_pairs']} pairs."


def _sampling_key(p: dict | None, job: dict | None) -> list | None:
    if p is None:
        return None
    progress = [p[k] for k in ("prompts", "without_answers", "unranked", "ranked", "equal", "skipped")]
    if job is None:
        return progress
    return progress + [
        job["job_id"],
        job["status"],
        job["progress_done"],
        job["progress_total"],
        job["stop_requested"],
    ]


def sampling_state(db: str, project: str) -> tuple[dict | None, dict | None]:
    """The project's seed progress (None without a project or seed prompts) and its newest sampling job."""
    if not project:
        return None, None
    try:
        p = actions.seed_progress(db, project)
    except ActionError:
        return None, None
    return (p if p["prompts"] else None), actions.seed_answers_job(db, project)


def sampling_view(p: dict | None, job: dict | None) -> list:
    """The Project tab's seed section: shown only for a project with seed prompts; the button while some wait for
    answers and no job samples them; the job's progress bar once there is one."""
    if p is None:
        return [gr.update(visible=False), "", gr.update(interactive=False), ""]
    busy = job is not None and job["status"] in actions.ACTIVE
    bar = ""
    if job is not None and (busy or job["status"] != "done" or p["without_answers"]):
        bar = progress_html(job)
        if job["status"] in actions.RESUMABLE:
            bar += "<div class='spa-setup-note'>Resume it on the Run tab: it goes on with the prompts left.</div>"
    return [
        gr.update(visible=True),
        sampling_md(p, job),
        gr.update(interactive=bool(p["without_answers"]) and not busy),
        bar,
    ]


def build(db: str, project: gr.Dropdown) -> None:
    """The Project tab's seed section (see sampling_view), polled while the tab is open."""
    with gr.Group(visible=False, elem_id="seed-sampling") as group:
        status = gr.Markdown(elem_id="seed-status")
        with gr.Row(equal_height=True):
            samples = gr.Number(
                4,
                label="Answers per prompt",
                minimum=2,
                maximum=MAX_SAMPLES,
                precision=0,
                scale=1,
                min_width=120,
                elem_id="seed-samples",
            )
            sample = gr.Button(
                "Sample answers for the seed", variant="primary", scale=2, interactive=False, elem_id="seed-sample"
            )
        job_view = gr.HTML(elem_id="seed-job")
        note = gr.Markdown(elem_id="seed-sample-message")
    timer = gr.Timer(POLL_S)
    drawn = gr.State(None)
    outputs = [group, status, sample, job_view, drawn]

    def draw(project_, drawn_=None, force=True):
        p, job = sampling_state(db, project_)
        key = _sampling_key(p, job)
        if not force and key == drawn_:
            return [gr.skip()] * len(outputs)
        return sampling_view(p, job) + [key]

    project.change(
        lambda p: draw(p) + [""], [project], outputs + [note], show_progress="hidden", api_visibility="private"
    )
    timer.tick(
        lambda p, d: draw(p, d, force=False),
        [project, drawn],
        outputs,
        show_progress="hidden",
        api_visibility="private",
        concurrency_limit=None,
    )

    def on_sample(project_, n):
        if n is None or n < 2 or n > MAX_SAMPLES:
            return draw(project_) + [f"✗ Answers per prompt: from 2 to {MAX_SAMPLES}."]
        try:
            queued = actions.queue_seed_answers(db, project_, int(n))
        except ActionError as e:
            return draw(project_) + [f"✗ Not queued: {e}"]
        return draw(project_) + [
            f"✓ Queued job #{queued['job_id']}: {queued['samples']} answers for each of {queued['prompts']} seed "
            f"prompts from `{queued['model']}`. Its log, Stop and Resume are on the Run tab."
        ]

    sample.click(on_sample, [project, samples], outputs + [note], api_visibility="private")
