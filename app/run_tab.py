"""Run tab: queue, stop, resume and approve runs; a per-stage progress bar with counts and ETA, the live log
and live plots. Everything is read from SQLite on each timer tick, so it survives a page refresh and a
studio restart."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from app import actions, plots
from app.actions import ActionError
from app.config_form import form_yaml, named, typed_values_js
from app.security import actor_of
from engine.config import RunConfig
from engine.runtime.jobs import EXPORT, RUN

POLL_S = 1.5
PLOT_HEIGHT = 230


@dataclass
class RunTab:
    job: gr.Dropdown


# Keeps the log at its newest line: once when it first fills (after a reload), then whenever the person has not
# scrolled up to read.
SCROLL_LOG_JS = (
    "() => { const t = document.querySelector('#run-log textarea'); if (!t || !t.value) return; "
    "const atEnd = t.scrollHeight - t.scrollTop - t.clientHeight < 40; "
    "if (!t.dataset.spaFilled || atEnd) { t.scrollTop = t.scrollHeight; t.dataset.spaFilled = '1'; } }"
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


STATUS_COLOURS = {
    "queued": "#6b7280",
    "running": "#2563eb",
    "paused": "#d97706",
    "done": "#16a34a",
    "failed": "#dc2626",
    "stopped": "#6b7280",
    "interrupted": "#b45309",
}


def progress_html(s: dict | None) -> str:
    """The job's state, the current stage's bar (counts, percent, ETA) and every stage of the plan as a chip."""
    if s is None:
        return (
            "<div class='spa-progress'><div class='spa-head'>No run selected. Queue one with “Queue run”.</div></div>"
        )
    status = "probably interrupted (no heartbeat)" if s["stale"] else s["status"]
    shown_status = "interrupted" if s["stale"] else s["status"]
    colour = STATUS_COLOURS[shown_status] if s["status"] in STATUS_COLOURS else "#6b7280"
    where = f" · round {s['round']} · {html.escape(s['stage'])}" if s["stage"] else ""
    total, done = s["progress_total"], s["progress_done"]
    if total:
        counts = f"{done}/{total} ({100 * done / total:.0f}%)"
        eta = f" · ETA {_duration(s['eta_s'])}" if s["status"] == "running" and s["eta_s"] is not None else ""
    else:
        counts, eta = ("waiting for a worker" if s["status"] == "queued" else ""), ""
    stop = " · stop requested" if s["stop_requested"] and s["status"] == "running" else ""
    chips = "".join(
        f"<span class='spa-chip spa-{c['state']}'>r{c['round']} {html.escape(c['stage'])}</span>" for c in s["plan"]
    )
    error = f"<div class='spa-error'>{html.escape(s['error'][:600])}</div>" if s["error"] else ""
    pct = 100 * done / total if total else (100 if s["status"] == "done" else 0)
    kind = "run" if s["kind"] == RUN else html.escape(s["kind"]) + " job"
    return (
        f"<div class='spa-progress'>"
        f"<div class='spa-head'><span class='spa-status' style='background:{colour}'>{html.escape(status)}</span> "
        f"<b>{kind} #{s['job_id']}</b>{where} · stage {s['stages_done']}/{s['stages_total']} · "
        f"{counts}{eta}{stop}</div>"
        f"<div class='spa-bar'><div style='width:{pct:.1f}%; background:{colour}'></div></div>"
        f"<div class='spa-stages'>{chips}</div>{error}</div>"
    )


def log_text(s: dict | None) -> str:
    if s is None:
        return ""
    return "\n".join(f"{e['at'][11:19]} {e['level'][:4]:4} {e['message']}" for e in s["log"])


def job_choices(db: str, project: str) -> list[tuple[str, int]]:
    """The project's runs and setup jobs, newest first (exports are followed on the Export tab, not here)."""
    out = []
    for j in reversed([j for j in actions.jobs(db, project) if j["kind"] != EXPORT]):
        where = f" · r{j['round']} {j['stage']}" if j["stage"] and j["status"] in ("running", "paused") else ""
        out.append((f"#{j['job_id']} {j['kind']} · {j['status']}{where}", j["job_id"]))
    return out


def settings_line(cfg: RunConfig | None) -> str:
    """The settings a person most often changes, as the queued configuration holds them."""
    if cfg is None:
        return ""
    rounds = ", ".join(str(cfg.prompts_for_round(i)) for i in range(1, cfg.rounds + 1)) or "none"
    return (
        f"model `{cfg.model}` · learning rate **{cfg.learning_rate:g}** · seed epochs **{cfg.epochs}** · rounds "
        f"**{cfg.rounds}** (prompts {rounds}) · β {cfg.beta:g} · judge {cfg.judge.kind}"
    )


def queued_config(text: str, values: list) -> str:
    """The form's values as they are when Queue is pressed, over the YAML's other keys (app/config_form.py),
    checked for a studio run."""
    text = form_yaml(text, list(values))
    cfg = actions.validate_config(text)
    if cfg.rounds < 1:
        raise ActionError(
            "Rounds (rounds): at least 1 round, so there are pairs to review (0 trains on the seed pairs only)"
        )
    return text


def stop_message(job_id: int, before: str, after: dict, stage: str, round_: int | None) -> str:
    if before == "running":
        where = f" (round {round_}, {stage})" if stage else ""
        return (
            f"■ Stop requested for run #{job_id}: the worker stops its current stage{where} at its next step "
            "and keeps every completed stage. **Resume** continues from there."
        )
    return (
        f"■ Run #{job_id} was {before} and is now {after['status']}; nothing was running. **Resume** queues it again."
    )


def build(db: str, project: gr.Dropdown, config) -> RunTab:
    """`config` is the Project tab's configuration views (editor and form fields)."""
    with gr.Row(equal_height=True):
        job = gr.Dropdown(label="Run", choices=[], elem_id="job-select", scale=3, min_width=260)
        queue_btn = gr.Button("Queue run", variant="primary", elem_id="queue-run", scale=1, min_width=110)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-run", scale=1, min_width=80)
        resume_btn = gr.Button("Resume", elem_id="resume-run", scale=1, min_width=90)
        approve_btn = gr.Button("Approve review → train", elem_id="approve-review", scale=1, min_width=180)
    message = gr.Markdown(elem_id="run-message")
    audit_note = gr.Markdown(elem_id="run-audit-warning")
    progress = gr.HTML(progress_html(None), elem_id="run-progress")
    with gr.Row(equal_height=False):
        log = gr.Textbox(
            label="Log",
            lines=12,
            max_lines=12,
            interactive=False,
            autoscroll=True,
            scale=4,
            min_width=420,
            elem_id="run-log",
        )
        with gr.Column(scale=5, min_width=560):
            gr.Markdown("**Per round**")
            table = gr.Markdown(elem_id="run-round-table")
    with gr.Accordion("Configuration of this run, exactly as queued", open=False):
        settings = gr.Markdown(elem_id="run-settings")
        job_yaml = gr.Code(
            language="yaml", interactive=False, lines=8, max_lines=30, show_label=False, elem_id="run-config"
        )
    with gr.Row():
        loss = gr.ScatterPlot(
            plots.empty(["step", "value", "round"]),
            x="step",
            y="value",
            color="round",
            title="Training loss",
            height=PLOT_HEIGHT,
            y_title="loss",
        )
        margins = gr.ScatterPlot(
            plots.empty(["step", "value", "round"]),
            x="step",
            y="value",
            color="round",
            title="Reward margin (chosen − rejected)",
            height=PLOT_HEIGHT,
            y_title="margin",
        )
    with gr.Row():
        accuracies = gr.ScatterPlot(
            plots.empty(["step", "value", "round"]),
            x="step",
            y="value",
            color="round",
            title="Reward accuracy",
            height=PLOT_HEIGHT,
            y_title="accuracy",
        )
        flagged = gr.ScatterPlot(
            plots.empty(["step", "value", "round"]),
            x="step",
            y="value",
            color="round",
            title="Flagged fraction (noise detection)",
            height=PLOT_HEIGHT,
            y_title="fraction",
            y_lim=[0.0, 1.0],
        )
    # points, not lines, in every plot: a series with one point (one round, a round of one step) is invisible as a
    # line
    per_round = gr.ScatterPlot(
        plots.empty(["round", "value", "series"]),
        x="round",
        y="value",
        color="series",
        title="Per round: evaluation and self-labelling",
        height=PLOT_HEIGHT + 40,
    )
    timer = gr.Timer(POLL_S)
    drawn = gr.State(None)  # what the plots show: (job id, metric count, last metric id)

    train_plots = [loss, margins, accuracies, flagged]

    def refresh(project_, job_id, drawn_):
        """Run list, status, log, round table and plots of the selected run; what did not change since the
        last tick (`drawn_`) is skipped so nothing flickers."""
        drawn_ = drawn_ or {}
        choices = job_choices(db, project_) if project_ else []
        ids = [c[1] for c in choices]
        if job_id not in ids:
            job_id = ids[0] if ids else None
        same_list = drawn_.get("choices") == [list(c) for c in choices] and drawn_.get("job") == job_id
        job_update = gr.skip() if same_list else gr.update(choices=choices, value=job_id)
        state = {"choices": [list(c) for c in choices], "job": job_id, "metrics": None}
        if job_id is None:
            state["series"] = [[]] * 5
            return [
                job_update,
                progress_html(None),
                "",
                "_No run yet._",
                *[plots.empty(["step", "value", "round"])] * 4,
                plots.empty(["round", "value", "series"]),
                "_No run selected._",
                "",
                "",
                state,
            ]
        status = actions.job_status(db, job_id)
        if drawn_.get("config_of") == job_id:
            settings_md, config_text = gr.skip(), gr.skip()
        else:
            settings_md = settings_line(actions.validate_config_or_none(status["config_yaml"]))
            config_text = status["config_yaml"]
        state["config_of"] = job_id
        metrics = actions.run_metrics(db, job_id)
        state["metrics"] = [job_id, len(metrics), metrics[-1]["id"] if metrics else 0]
        if state["metrics"] == drawn_.get("metrics"):
            figures, table_md, state["series"] = [gr.skip()] * 5, gr.skip(), None
        else:
            frames = [plots.train_frame(metrics, name) for name in plots.TRAIN_PLOTS]
            rounds, order = plots.round_frame(metrics)
            steps = plots.step_range(frames)  # one x axis for the four training plots, so they line up
            figures = [gr.update(value=f, x_lim=steps) for f in frames] + [gr.update(value=rounds, sort=order)]
            state["series"] = [plots.series_of(f, "round") for f in frames] + [plots.series_of(rounds, "series")]
            table_md = round_table(db, job_id)
        return [
            job_update,
            progress_html(status),
            log_text(status),
            table_md,
            *figures,
            settings_md,
            config_text,
            warning_update(drawn_, state, job_id),
            state,
        ]

    def warning_update(drawn_, state, job_id):
        """The audit's warning for the run, redrawn only when its text changed."""
        state["warning"] = audit_warning_md(db, job_id)
        return gr.skip() if state["warning"] == drawn_.get("warning") else state["warning"]

    outputs = [job, progress, log, table, *train_plots, per_round, settings, job_yaml, audit_note, drawn]

    def redraw(drawn_):
        series = (drawn_ or {}).get("series")
        return [plots.redraw(s) for s in series] if series else [gr.skip()] * 5

    def then_redraw(event):
        event.then(redraw, [drawn], [*train_plots, per_round], show_progress="hidden", api_visibility="private")
        return event

    # every open tab polls: a read-only refresh, so no tab waits for another's
    then_redraw(
        timer.tick(
            refresh,
            [project, job, drawn],
            outputs,
            show_progress="hidden",
            api_visibility="private",
            concurrency_limit=None,
        )
    ).then(None, js=SCROLL_LOG_JS)
    then_redraw(
        project.change(
            lambda p: refresh(p, None, None), [project], outputs, show_progress="hidden", api_visibility="private"
        )
    ).then(None, js=SCROLL_LOG_JS)
    then_redraw(
        job.input(
            lambda p, j: refresh(p, j, None), [project, job], outputs, show_progress="hidden", api_visibility="private"
        )
    )

    def act(fn, project_, job_id, *args):
        try:
            result = fn(*args)
        except ActionError as e:
            return [f"✗ {e}"] + refresh(project_, job_id, None)
        return [result] + refresh(project_, job_id, None)

    def on_queue(project_, job_id, text, *values):
        """Every form field's value is an input of this event, read by the browser at the click: they, not a
        synchronisation into hidden state, are what is validated and queued."""
        try:
            queued = actions.queue_run(db, project_, queued_config(text, values))
        except ActionError as e:
            return [f"✗ Not queued, nothing changed: {named(str(e))}"] + refresh(project_, job_id, None)
        cfg = actions.validate_config_or_none(actions.job_status(db, queued["job_id"])["config_yaml"])
        return [
            f"✓ Queued run #{queued['job_id']} of **{queued['project']}**: {settings_line(cfg)}. The worker "
            "starts it when it is free."
        ] + refresh(project_, queued["job_id"], None)

    def on_stop(project_, job_id):
        if job_id is None:
            return ["Choose a run."] + refresh(project_, job_id, None)
        before = actions.job_status(db, job_id)
        return act(
            lambda: stop_message(
                job_id, before["status"], actions.stop_run(db, job_id), before["stage"], before["round"]
            ),
            project_,
            job_id,
        )

    def on_resume(project_, job_id):
        if job_id is None:
            return ["Choose a run."] + refresh(project_, job_id, None)
        return act(
            lambda: (
                f"Run #{actions.resume_run(db, job_id)['job_id']} queued again: it continues after "
                "its last completed stage."
            ),
            project_,
            job_id,
        )

    def on_approve(project_, job_id, request: gr.Request):
        if job_id is None:
            return ["Choose a run."] + refresh(project_, job_id, None)
        actor = actor_of(request)
        return act(
            lambda: (
                f"Review of round {actions.approve_review(db, job_id, actor)['round']} approved: training is queued."
            ),
            project_,
            job_id,
        )

    with_message = [message] + outputs
    then_redraw(
        queue_btn.click(
            on_queue,
            [project, job, config.yaml_editor] + config.fields,
            with_message,
            show_progress="minimal",
            api_visibility="private",
            js=typed_values_js(leading=3),
        )
    )
    then_redraw(
        stop_btn.click(on_stop, [project, job], with_message, show_progress="minimal", api_visibility="private")
    )
    then_redraw(
        resume_btn.click(on_resume, [project, job], with_message, show_progress="minimal", api_visibility="private")
    )
    then_redraw(
        approve_btn.click(on_approve, [project, job], with_message, show_progress="minimal", api_visibility="private")
    )
    return RunTab(job=job)


def audit_warning_md(db: str, job_id: int) -> str:
    """The warning the Run tab shows while the run's latest blind audit cannot tell its self-judge from a coin."""
    text = actions.run_audit_warning(db, job_id)
    if not text:
        return ""
    headline, _, rest = text.partition(": ")
    return f"⚠ **{headline[0].upper()}{headline[1:]}:** {rest}"


def round_table(db: str, job_id: int) -> str:
    """The same table `launch.py run` prints at the end."""
    return actions.evaluation_table(db, job_id) or "_No evaluation yet._"
