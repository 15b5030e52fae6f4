"""Export tab: the grown preference dataset (TRL format, with provenance) and the run's models.

A dataset export only reads SQLite and writes files, so it runs here like an import does. A model or adapter
export loads weights, which the UI process never does: it is queued as a job of kind EXPORT when the
worker declares it runs those (JOB_KINDS, the registry in engine/runtime/jobs.py), and otherwise the equivalent
command is shown."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import gradio as gr
import pandas as pd

from app import actions
from app.actions import ActionError
from engine.runtime.jobs import EXPORT

WHATS = ["dataset", "adapter", "model"]
FORMATS = ["jsonl", "parquet", "hf"]
SOURCES = ["seed", "self", "human", "accepted", "gold"]
LAST = "last"


def export_available() -> bool:
    return importlib.util.find_spec("engine.data.export") is not None


def worker_runs_exports() -> bool:
    """Whether the worker runs export jobs: the job-kind registry both sides import."""
    return EXPORT in actions.JOB_KINDS


def request_for(root: Path, project, what, fmt, round_, out, min_conf, exclude_noisy, sources, force, ordered=False):
    """The form as an export request confined to `root`: a relative folder is taken inside it, and the export
    refuses any folder that resolves outside it (`..`, links, absolute paths elsewhere)."""
    from app.actions import ExportRequest

    dataset = what == "dataset"
    return ExportRequest(
        project=project,
        what=what,
        out=actions.export_folder(root, out),  # absolute: the worker runs elsewhere
        force=bool(force),
        root=str(root),
        round=None if dataset or round_ in (None, "", LAST) else int(round_),
        format=fmt if dataset else "jsonl",
        sources=(list(sources) or None) if dataset else None,
        min_confidence=float(min_conf) if dataset and min_conf not in (None, "") and min_conf > 0.5 else None,
        exclude_noisy=bool(exclude_noisy) and dataset,
        seed_ordered_pairs=bool(ordered) and dataset,
    )


def command_for(db: str, req) -> str:
    parts = [
        "python",
        "launch.py",
        "export",
        "--project",
        req.project,
        "--what",
        req.what,
        "--out",
        req.out or "OUT",
        "--db",
        db,
    ]
    if req.what == "dataset":
        parts += ["--format", req.format]
        if req.sources:
            parts += ["--sources", *req.sources]
        if req.min_confidence is not None:
            parts += ["--min-confidence", str(req.min_confidence)]
        if req.exclude_noisy:
            parts.append("--exclude-noisy")
        if req.seed_ordered_pairs:
            parts.append("--seed-ordered-pairs")
    elif req.round is not None:
        parts += ["--round", str(req.round)]
    if req.force:
        parts.append("--force")
    return " ".join(shlex.quote(p) for p in parts)


def exportable_frame(db: str, project: str) -> pd.DataFrame:
    from app.actions import ExportError, exportable

    columns = ["run", "round", "kind", "exports", "path", "base model", "on disk"]
    if not project:
        return pd.DataFrame(columns=columns)
    try:
        rows = exportable(db, project)
    except ExportError:
        rows = []
    return pd.DataFrame(
        [
            [
                r["job_id"],
                r["round"],
                r["kind"],
                ", ".join(r["exports"]),
                r["path"],
                r["base_model"],
                "yes" if r["exists"] else "missing",
            ]
            for r in rows
        ],
        columns=columns,
    )


def run_export(db: str, req) -> str:
    from app.actions import ExportError, export

    if req.what == "dataset":
        try:
            out = export(db, req)
        except ExportError as e:
            return f"✗ Not exported: {e}"
        files = sorted(p.name for p in Path(out).iterdir())
        return f"✓ Dataset exported to `{out}` ({', '.join(files)})."
    if not worker_runs_exports():
        return (
            "Model and adapter exports load the weights, which the studio leaves to the worker, and this "
            "worker does not run export jobs yet: use “Export from a terminal instead” below."
        )
    job_id = actions.queue_export(db, req)
    return f"✓ Export queued as job #{job_id}; it is listed under “Export jobs” below."


def export_jobs_md(db: str, project: str) -> str:
    """The project's model and adapter exports, newest first (the Run tab shows runs only)."""
    rows = [j for j in actions.jobs(db, project) if j["kind"] == EXPORT] if project else []
    if not rows:
        return "_No model or adapter export queued yet._"
    out = []
    for j in reversed(rows[-10:]):
        status = actions.job_status(db, j["job_id"])
        counts = f" · {status['progress_done']}/{status['progress_total']}" if status["progress_total"] else ""
        error = f" · {status['error'][:200]}" if status["error"] else ""
        out.append(f"- #{j['job_id']} **{status['status']}** {status['stage'] or ''}{counts}{error}")
    return "\n".join(out)


def build(db: str, project: gr.Dropdown, tab: gr.Tab) -> None:
    if not export_available():
        gr.Markdown("### Export\nNot built yet: `engine/export.py` is missing from this installation.")
        return
    gr.Markdown("### Models you can export")
    note = gr.Markdown(elem_id="export-note", visible=False)
    table = gr.Dataframe(
        interactive=False,
        wrap=True,
        max_height=240,
        elem_id="export-table",
        column_widths=["55px", "65px", "80px", "130px", "34%", "26%", "75px"],
    )
    with gr.Row(equal_height=True):
        what = gr.Radio(
            WHATS,
            value="dataset",
            label="What",
            scale=2,
            elem_id="export-what",
            info="dataset: TRL prompt/chosen/rejected with provenance · adapter: PEFT · model: merged",
        )
        fmt = gr.Dropdown(
            FORMATS, value="jsonl", label="Dataset format", scale=1, info="jsonl, parquet, or a datasets folder (hf)"
        )
        round_ = gr.Dropdown([LAST], value=LAST, label="Round (models)", scale=1, info="which round's model")
    out = gr.Textbox(
        label="Output folder",
        info="must be new or empty (or tick replace); relative to the export folder, and inside it",
        elem_id="export-out",
    )
    with gr.Row(equal_height=True):
        sources = gr.CheckboxGroup(SOURCES, label="Dataset: label sources (none ticked = all)", scale=2)
        min_conf = gr.Number(
            0.5,
            label="Dataset: min confidence",
            minimum=0.5,
            maximum=1.0,
            step=0.01,
            scale=1,
            info="self labels below are left out; human, gold, seed always pass",
        )
        exclude_noisy = gr.Checkbox(label="Dataset: leave out flagged pairs", scale=1)
        ordered = gr.Checkbox(
            label="Dataset: every ordered pair of ranked seed prompts",
            info="best over each other answer, each over the worst (2N − 3 per prompt), not only best over worst",
            scale=1,
            elem_id="export-seed-ordered",
        )
        force = gr.Checkbox(label="Replace a non-empty folder", scale=1)
    export_btn = gr.Button("Export", variant="primary", elem_id="export-button")
    result = gr.Markdown(elem_id="export-result")
    with gr.Row(equal_height=True):
        gr.Markdown("**Export jobs**")
        jobs_refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id="export-jobs-refresh")
    jobs_md = gr.Markdown(elem_id="export-jobs")
    with gr.Accordion("Export from a terminal instead", open=False):
        command = gr.Code(language="shell", label="The same export", lines=1, interactive=False)

    form = [project, what, fmt, round_, out, min_conf, exclude_noisy, sources, force, ordered]

    def default_out(project_, what_):
        return str(Path("exports") / (project_ or "project") / what_)

    def on_open(project_):
        frame = exportable_frame(db, project_)
        rounds = sorted({int(r) for r in frame["round"]}) if len(frame) else []
        note = "" if len(frame) else "_No run of this project has saved a model yet; the dataset can be exported._"
        return frame, gr.update(choices=[LAST] + rounds, value=LAST), gr.update(value=note, visible=bool(note))

    def on_form(*values):
        try:
            return command_for(db, request_for(actions.export_root(db), *values))
        except (ValueError, TypeError) as e:
            return f"# {e}"

    def on_export(*values):
        try:
            req = request_for(actions.export_root(db), *values)
            return run_export(db, req), command_for(db, req), exportable_frame(db, values[0])
        except (ActionError, ValueError, TypeError) as e:
            return f"✗ {e}", gr.skip(), gr.skip()

    # Opening the tab refreshes what can be exported but leaves the folder alone: a reply to the tab's select
    # could otherwise land after the person has typed a folder, and replace it. The default folder follows the
    # project and the kind of export only.
    for trigger in (tab.select, project.change):
        trigger(on_open, [project], [table, round_, note], show_progress="hidden", api_visibility="private").then(
            on_form, form, [command], show_progress="hidden", api_visibility="private"
        )
    project.change(default_out, [project, what], [out], show_progress="hidden", api_visibility="private")
    what.input(default_out, [project, what], [out], api_visibility="private").then(
        on_form, form, [command], show_progress="hidden", api_visibility="private"
    )
    gr.on(
        [c.input for c in (fmt, round_, out, min_conf, exclude_noisy, sources, force, ordered)],
        on_form,
        form,
        [command],
        show_progress="hidden",
        api_visibility="private",
    )
    # the folder as its box shows it at the click (Gradio may not have synced a path typed a moment before)
    read_out = (
        f"(...a) => {{ const box = document.querySelector('#export-out input, #export-out textarea'); "
        f"if (box) a[{form.index(out)}] = box.value; return a; }}"
    )
    export_btn.click(on_export, form, [result, command, table], api_visibility="private", js=read_out).then(
        lambda p: export_jobs_md(db, p), [project], [jobs_md], show_progress="hidden", api_visibility="private"
    )
    for trigger in (tab.select, project.change, jobs_refresh.click):
        trigger(
            lambda p: export_jobs_md(db, p), [project], [jobs_md], show_progress="hidden", api_visibility="private"
        )
