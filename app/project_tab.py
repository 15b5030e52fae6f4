"""Project tab: import seed / pool / eval files with a preview, and edit, validate, save and load the run
configuration (a form for the main method parameters plus the full YAML)."""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from app import actions, judge_check_view, seed_sampling
from app.actions import ActionError
from app.config_form import (
    FORM_ROWS,
    FormField,
    baseline_json,
    baseline_of,
    elem_id,
    field_info,
    form_values,
    merged_yaml,
    named,
    typed_values_js,
)
from app.imported_rows import DATA_PAGE, data_frame, data_view, issues_frame, preview_md
from app.run_tab import progress_html
from engine.config import CHOICES, RunConfig

FILE_TYPES = [".jsonl", ".json", ".csv", ".parquet", ".gz", ".ndjson"]
SETUP_POLL_S = 1.5


@dataclass
class ProjectTab:
    """The configuration as the Run tab queues it: the YAML editor and the form fields (app/config_form.py)."""

    yaml_editor: gr.Code
    fields: list
    counts: gr.Markdown


def _field(field: FormField):
    """A form field's component, explained by the config field's help and range (config_form.field_info). It is
    drawn disabled: the event that fills it with the project's configuration enables it (`unlocked`), so nothing
    typed before the values arrive is overwritten or joined by them."""
    elem, info = elem_id(field.path), field_info(field.path)
    common = dict(label=field.label, info=info, elem_id=elem, min_width=150, interactive=False)
    if field.kind == "bool":
        return gr.Checkbox(**common)
    if field.kind == "choice":
        return gr.Dropdown(list(CHOICES[field.path]), **common)
    return gr.Textbox(**common)  # numbers too (config_form.shown)


def unlocked(update) -> dict:
    """A fill of a form field (a value, or gr.skip() for none) that also makes the field editable."""
    return {**update, "interactive": True} if isinstance(update, dict) else gr.update(value=update, interactive=True)


def describe(cfg: RunConfig) -> str:
    rounds = ", ".join(str(cfg.prompts_for_round(i)) for i in range(1, cfg.rounds + 1)) or "none"
    tune = f"LoRA r{cfg.lora.r}" if cfg.lora.enabled else "full fine-tune"
    gate = ", review gate on" if cfg.review_gate else ""
    files = [f"{key} `{getattr(cfg, key)}`" for key in ("seed_data", "prompt_pool", "eval_data") if getattr(cfg, key)]
    data = ", ".join(files) if files else "the project's imported rows"
    return (
        f"✓ valid: model `{cfg.model}`, {cfg.rounds} rounds (prompts {rounds}), β {cfg.beta:g}, "
        f"lr {cfg.learning_rate:g}, {cfg.epochs} seed epochs, {tune}, judge {cfg.judge.kind}{gate}; data: {data}"
    )


def _counts_md(db: str, project: str) -> str:
    if not project:
        return "No project selected."
    try:
        s = actions.project_summary(db, project)
    except ActionError as e:
        return str(e)
    ex = s["examples"]
    return (
        f"**{s['project']}** · seed pairs **{ex['seed']}** · pool prompts **{ex['pool']}** · "
        f"eval pairs **{ex['eval']}** · runs **{s['jobs']}**"
    )


def setup_html(s: dict | None) -> str:
    """A project's background setup (the text world's job): its progress bar and last log line while it runs,
    what went wrong when it failed, what was imported when it is done; nothing for a project without one."""
    if s is None:
        return ""
    if s["status"] == "done":
        return (
            "<div class='spa-progress'>✓ <b>Set up</b>: the text world's seed pairs and pool prompts are "
            "imported (below) and its configuration is the one shown: queue it on the Run tab.</div>"
        )
    last = html.escape(s["log"][-1]["message"]) if s["log"] else ""
    if s["status"] == "failed":
        hint = (
            "The project's data and configuration are as they were. Resume the job on the Run tab once the "
            "cause is fixed (a cached step is not redone)."
        )
    elif s["status"] in ("stopped", "interrupted"):
        hint = "Resume it on the Run tab: it continues after its last completed step."
    else:
        hint = f"Setting up in the background: {last} (the whole log is on the Run tab)."
    return progress_html(s) + f"<div class='spa-setup-note'>{hint}</div>"


def _setting_up(status: dict | None) -> bool:
    return status is not None and status["status"] in actions.ACTIVE


def _setup_key(status: dict | None) -> list | None:
    if status is None:
        return None
    return [
        status["job_id"],
        status["status"],
        status["stage"],
        status["progress_done"],
        status["progress_total"],
        status["log"][-1]["id"] if status["log"] else 0,
    ]


def build(db: str, project: gr.Dropdown) -> ProjectTab:
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=380):
            gr.Markdown("### Data")
            counts = gr.Markdown(elem_id="project-counts")
            setup = gr.HTML(elem_id="project-setup")
            setup_timer = gr.Timer(SETUP_POLL_S)
            setup_shown = gr.State(None)  # what the setup view shows (_setup_key), so an unchanged tick draws nothing
            seed_sampling.build(db, project)
            role = gr.Radio(
                ["seed", "pool", "eval"],
                value="seed",
                label="Import as",
                info="seed: labelled pairs to start from · pool: prompts for the rounds · eval: held-out pairs",
            )
            upload = gr.File(
                label="Data file (JSONL, JSON, CSV, Parquet)",
                file_types=FILE_TYPES,
                type="filepath",
                elem_id="import-file",
                height=120,
            )
            preview = gr.Markdown(elem_id="import-preview")
            first_rows = gr.Dataframe(
                label="First rows",
                visible=False,
                interactive=False,
                wrap=True,
                max_height=260,
                elem_id="import-first-rows",
            )
            issues = gr.Dataframe(
                label="Problems (file, line, field)",
                visible=False,
                interactive=False,
                wrap=True,
                max_height=260,
                elem_id="import-issues",
                column_widths=["22%", "14%", "18%", "46%"],
            )
            import_btn = gr.Button("Import", variant="primary", elem_id="import-button", interactive=False)
            import_result = gr.Markdown(elem_id="import-result")
            gr.Markdown("### Imported data")
            with gr.Row(equal_height=True):
                data_role = gr.Radio(
                    ["seed", "pool", "eval"],
                    value="seed",
                    show_label=False,
                    scale=3,
                    elem_id="data-role",
                    container=False,
                )
                data_prev = gr.Button("◀", size="sm", scale=0, min_width=40, elem_id="data-prev")
                data_next = gr.Button("▶", size="sm", scale=0, min_width=40, elem_id="data-next")
            data_info = gr.Markdown(elem_id="data-info")
            data_table = gr.Dataframe(
                data_frame([], "seed"),
                interactive=False,
                wrap=True,
                max_height=320,
                elem_id="data-table",
                column_widths=["110px", "40%", "25%", "25%"],
            )
            data_offset = gr.State(0)
            judge_check_view.build(db, project)
        with gr.Column(scale=7, min_width=480):
            gr.Markdown("### Run configuration")
            fields = []
            for row in FORM_ROWS:
                with gr.Row(equal_height=True):
                    for field in row:
                        fields.append(_field(field))
            baseline = gr.Textbox(visible=False, elem_id="config-baseline")
            status = gr.Markdown(elem_id="config-status")
            editor = gr.Code(
                language="yaml",
                label="Full configuration (YAML)",
                lines=16,
                max_lines=28,
                elem_id="config-yaml",
                interactive=False,  # like the form: editable once the project's configuration is in (on_project)
            )
            with gr.Row():
                validate_btn = gr.Button("Validate", elem_id="config-validate", min_width=100)
                name = gr.Textbox(
                    value="run",
                    label="Name",
                    show_label=False,
                    placeholder="configuration name",
                    container=False,
                    min_width=140,
                    elem_id="config-name",
                )
                save_btn = gr.Button("Save configuration", variant="primary", elem_id="config-save", min_width=140)
            with gr.Row():
                saved = gr.Dropdown(label="Saved configurations", choices=[], elem_id="config-saved", scale=3)
                load_btn = gr.Button("Load", elem_id="config-load", min_width=80, scale=1)
                upload_yaml = gr.UploadButton(
                    "Open YAML file…", file_types=[".yaml", ".yml"], type="filepath", min_width=120, scale=1
                )
                download = gr.DownloadButton(
                    "Download YAML", value=None, min_width=120, scale=1, elem_id="config-download"
                )
            with gr.Accordion("Run it from a terminal instead", open=False):
                command = gr.Code(
                    language="shell",
                    label="The same run (after saving the configuration)",
                    lines=1,
                    interactive=False,
                    elem_id="config-command",
                )
                train_command = gr.Code(
                    language="shell",
                    label="Training stage command line (from train.num_gpus and train.strategy)",
                    lines=1,
                    interactive=False,
                    elem_id="config-train-command",
                )

    # import ------------------------------------------------------------------------------------------
    def on_preview(path, role_):
        if not path:  # cleared, also after an import: the import's message stays
            return "", gr.update(visible=False), gr.update(visible=False), gr.update(interactive=False), gr.skip()
        try:
            report = actions.preview_import(path, role_)
        except ActionError as e:
            return f"✗ {e}", gr.update(visible=False), gr.update(visible=False), gr.update(interactive=False), ""
        rows = pd.DataFrame(report.first_rows, columns=["line", "prompt", "chosen", "rejected"])
        if role_ == "pool":
            rows = rows[["line", "prompt"]]
        return (
            preview_md(report),
            gr.update(value=rows, visible=report.ok),
            gr.update(value=issues_frame(report), visible=not report.ok),
            gr.update(interactive=report.ok),
            "",
        )

    preview_outputs = [preview, first_rows, issues, import_btn, import_result]
    upload.change(on_preview, [upload, role], preview_outputs, show_progress="minimal", api_visibility="private")
    role.change(on_preview, [upload, role], preview_outputs, show_progress="minimal", api_visibility="private")

    def on_import(path, role_, project_):
        if not path:
            return "Choose a file first.", gr.skip(), gr.skip(), *[gr.skip()] * 5
        try:
            report = actions.import_file(db, path, project_, role_)
        except ActionError as e:
            return f"✗ {e}", gr.skip(), gr.skip(), *[gr.skip()] * 5
        if not report.ok:
            return (
                "✗ Nothing imported: the file has problems (see the table above).",
                gr.update(value=issues_frame(report), visible=True),
                _counts_md(db, project_),
                *[gr.skip()] * 5,
            )
        already = f", {report.already_present} already in the project" if report.already_present else ""
        dups = f", {len(report.duplicates)} duplicates skipped" if report.duplicates else ""
        table, info, offset = data_view(db, project_, role_)
        return (
            f"✓ Imported **{report.added}** {role_} rows into **{report.project}** "
            f"(format {report.format}{already}{dups}).",
            gr.skip(),
            _counts_md(db, project_),
            role_,
            table,
            info,
            offset,
            None,
        )

    import_btn.click(
        on_import,
        [upload, role, project],
        [import_result, issues, counts, data_role, data_table, data_info, data_offset, upload],
        api_visibility="private",
    )

    def on_data(project_, role_, offset):
        return data_view(db, project_, role_, offset)

    data_outputs = [data_table, data_info, data_offset]
    data_role.input(
        lambda p, r: on_data(p, r, 0),
        [project, data_role],
        data_outputs,
        show_progress="hidden",
        api_visibility="private",
    )
    data_prev.click(
        lambda p, r, o: on_data(p, r, o - DATA_PAGE),
        [project, data_role, data_offset],
        data_outputs,
        show_progress="hidden",
        api_visibility="private",
    )
    data_next.click(
        lambda p, r, o: on_data(p, r, o + DATA_PAGE),
        [project, data_role, data_offset],
        data_outputs,
        show_progress="hidden",
        api_visibility="private",
    )

    # configuration: the form and the YAML are two views of one configuration (app/config_form.py) --------
    def synced(text, message: str = ""):
        """Editor text, form values, the form's new baseline and the status line for a YAML text (the form
        keeps its values when the text does not validate)."""
        try:
            cfg = actions.validate_config(text)
        except ActionError as e:
            return [text] + [gr.skip()] * (len(fields) + 1) + [f"✗ {named(str(e))}"]
        values = form_values(cfg)
        return [text] + values + [baseline_json(values), message or describe(cfg)]

    def merged(text, baseline_, values) -> str:
        return merged_yaml(text, baseline_of(baseline_), list(values))

    def on_sync(text, baseline_, *values):
        try:
            return synced(merged(text, baseline_, values))
        except ActionError as e:
            return [gr.skip()] * (len(fields) + 2) + [f"✗ {e}"]

    synced_outputs = [editor] + fields + [baseline, status]

    def command_for(project_, name_):
        if not project_:
            return ""
        path = actions.config_file(db, project_, name_ or project_)
        return actions.run_command(db, path)

    def on_project(project_):
        text = actions.latest_config(db, project_) if project_ else ""
        configs = actions.saved_configs(db, project_) if project_ else []
        choices = [(f"#{c['id']} {c['name']} ({c['created_at'][:16].replace('T', ' ')})", c["id"]) for c in configs]
        config_name = configs[-1]["name"] if configs else (project_ or "run")
        table, info, offset = data_view(db, project_, "seed")
        status = actions.setup_job(db, project_) if project_ else None
        filled = synced(text)
        views = [unlocked(v) for v in filled[: len(fields) + 1]]  # the editor and the form: filled and enabled at once
        rest = [
            gr.update(choices=choices, value=choices[-1][1] if choices else None),
            config_name,
            command_for(project_, config_name),
            _counts_md(db, project_),
            "seed",
            table,
            info,
            offset,
            setup_html(status),
            _setup_key(status),
        ]
        return views + filled[len(fields) + 1 :] + rest

    project.change(
        on_project,
        [project],
        synced_outputs + [saved, name, command, counts, data_role] + data_outputs + [setup, setup_shown],
        show_progress="hidden",
        api_visibility="private",
    )

    def on_setup_tick(project_, shown):
        """A project's setup job, as it moves: its progress; once it has ended, the rows it imported too.
        Nothing is redrawn while nothing changed (most ticks: most projects have no setup job)."""
        status = actions.setup_job(db, project_) if project_ else None
        key = _setup_key(status)
        if key == shown:
            return [gr.skip()] * 7
        if _setting_up(status):
            return [setup_html(status)] + [gr.skip()] * 5 + [key]
        table, info, offset = data_view(db, project_, "seed")
        return [setup_html(status), _counts_md(db, project_), "seed", table, info, offset, key]

    setup_timer.tick(
        on_setup_tick,
        [project, setup_shown],
        [setup, counts, data_role] + data_outputs + [setup_shown],
        show_progress="hidden",
        api_visibility="private",
    )

    def on_form(text, baseline_, *values):
        """A form field was edited: write the edited fields into the YAML; the baseline becomes the form."""
        try:
            new = merged(text, baseline_, values)
        except ActionError as e:
            return gr.skip(), f"✗ {e}", gr.skip()
        try:
            message = describe(actions.validate_config(new))
        except ActionError as e:
            message = f"✗ {named(str(e))}"
        return new, message, baseline_json(list(values))

    gr.on(
        [f.input for f in fields],
        on_form,
        [editor, baseline] + fields,
        [editor, status, baseline],
        show_progress="hidden",
        api_visibility="private",
    )
    validate_btn.click(on_sync, [editor, baseline] + fields, synced_outputs, api_visibility="private")
    editor.blur(on_sync, [editor, baseline] + fields, synced_outputs, show_progress="hidden", api_visibility="private")

    def on_save(project_, name_, text, baseline_, *values):
        try:
            saved_ = actions.save_config(db, project_, name_, merged(text, baseline_, values))
        except ActionError as e:
            return [gr.skip()] * (len(fields) + 2) + [f"✗ Not saved: {named(str(e))}"] + [gr.skip()] * 3
        configs = actions.saved_configs(db, project_)
        choices = [(f"#{c['id']} {c['name']} ({c['created_at'][:16].replace('T', ' ')})", c["id"]) for c in configs]
        tmp = Path(tempfile.mkdtemp(prefix="spa-config-")) / Path(saved_["path"]).name
        tmp.write_text(saved_["yaml"], encoding="utf-8")
        return synced(
            saved_["yaml"], f"✓ Saved as configuration #{saved_['id']} and written to `{saved_['path']}`"
        ) + [gr.update(choices=choices, value=saved_["id"]), saved_["command"], gr.update(value=str(tmp))]

    save_btn.click(
        on_save,
        [project, name, editor, baseline] + fields,
        synced_outputs + [saved, command, download],
        api_visibility="private",
        js=typed_values_js(leading=4),
    )
    name.change(command_for, [project, name], [command], show_progress="hidden", api_visibility="private")

    def on_load(project_, config_id):
        chosen = next((c for c in actions.saved_configs(db, project_) if c["id"] == config_id), None)
        if chosen is None:
            return [gr.skip()] * (len(fields) + 2) + ["Choose a saved configuration.", gr.skip(), gr.skip()]
        return synced(chosen["yaml"]) + [chosen["name"], command_for(project_, chosen["name"])]

    load_btn.click(on_load, [project, saved], synced_outputs + [name, command], api_visibility="private")

    def on_open(path):
        text = Path(path).read_text(encoding="utf-8", errors="replace") if path else ""
        return synced(text) + [Path(path).stem if path else "run"]

    upload_yaml.upload(on_open, [upload_yaml], synced_outputs + [name], api_visibility="private")
    editor.change(
        lambda text: actions.train_command(db, text),
        [editor],
        [train_command],
        show_progress="hidden",
        api_visibility="private",
    )
    return ProjectTab(yaml_editor=editor, fields=fields, counts=counts)
