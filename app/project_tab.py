"""Project tab: import seed / pool / eval files with a preview, and edit, validate, save and load the run
configuration (a form for the main method parameters plus the full YAML)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml

from app import actions
from app.actions import ActionError
from engine.config import CHOICES, RunConfig

# (YAML key path, label, kind, one-line explanation), grouped into the form's rows
FORM_ROWS = [
    [("model", "Model", "text", "a local folder, a Hugging Face hub id, or demo:model (the embedded demo world)")],
    [("beta", "β", "number", "DPO strength: how far the policy may move from its reference (paper: 0.1)"),
     ("learning_rate", "Learning rate", "optional", "optimiser step size; empty: 5e-5 with LoRA, 5e-7 full fine-tune"),
     ("rounds", "Rounds", "int", "SPA rounds after the seed round (paper: 3)"),
     ("prompts_per_round", "Prompts per round", "list_int", "fresh pool prompts per round: one number or one per round")],
    [("generation.samples_per_prompt", "Samples per prompt", "int", "answers per prompt (≥ 2); above 2, the implicit, gold or density-ratio judge picks the pair from them"),
     ("generation.temperature", "Temperature", "number", "sampling temperature of generation (paper: 0.7)"),
     ("judge.kind", "Judge", "choice", "who labels new pairs: implicit = the model's own DPO reward (SPA)"),
     ("judge.reference", "Judge reference", "choice", "implicit judge: init = β·(logp π − logp π_init) (SPA); "
      "none = β·logp π (the authors' ablation)"),
     ("review_gate", "Review gate", "bool", "pause after judging each round until you approve the review")],
    [("refine.enabled", "Self-refinement", "bool", "smooth the labels of pairs flagged as likely noisy"),
     ("refine.k_fraction", "Flag fraction K", "number", "share flagged: the lowest extrapolated margins (paper: 0.1)"),
     ("refine.alpha", "Smoothing α", "number", "a flagged pair trains on the soft label 1 − α (paper: 0.1)"),
     ("refine.lambdas", "Extrapolation λ per round", "list_float", "(1+λ)·policy − λ·reference logits; 0 = off"),
     ("refine.warmup_fraction", "Warm-up", "number", "share of a round's steps before flags count (paper: 0.2)")],
    [("lora.enabled", "LoRA", "bool", "train a LoRA adapter (off: full fine-tune)"),
     ("lora.r", "LoRA r", "int", "adapter rank: the capacity of the update"),
     ("lora.alpha", "LoRA α", "int", "adapter scaling, often 2·r")],
]
FORM_FIELDS = [f for row in FORM_ROWS for f in row]
FILE_TYPES = [".jsonl", ".json", ".csv", ".parquet", ".gz", ".ndjson"]


@dataclass
class ProjectTab:
    yaml_editor: gr.Code
    counts: gr.Markdown


def _get(cfg: RunConfig, path: str):
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _shown(kind: str, value):
    if kind.startswith("list_"):
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "optional":
        return "" if value is None else f"{value:g}"
    return value


def _parsed(kind: str, label: str, value):
    """A form value as YAML wants it; ActionError names the field when it does not parse."""
    try:
        if kind == "int":
            return None if value is None else int(value)
        if kind in ("number", "optional"):
            return None if value in (None, "") else float(value)
        if kind == "list_int":
            items = [int(v) for v in str(value).replace(";", ",").split(",") if v.strip()]
            return items[0] if len(items) == 1 else items
        if kind == "list_float":
            return [float(v) for v in str(value).replace(";", ",").split(",") if v.strip()]
    except (TypeError, ValueError):
        raise ActionError(f"{label}: {value!r} is not a valid value") from None
    return value


def form_to_yaml(text: str, values: list) -> str:
    """The YAML with the form's values written into their keys (other keys are kept as they are)."""
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as e:
        raise ActionError(f"the YAML does not parse, fix it before using the form: {e}") from None
    if not isinstance(data, dict):
        raise ActionError("the YAML must be a mapping of keys")
    for (path, label, kind, _), value in zip(FORM_FIELDS, values):
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        parsed = _parsed(kind, label, value)
        if parsed is None and kind in ("number", "int", "optional"):
            node.pop(leaf, None)  # back to the default
        else:
            node[leaf] = parsed
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _field(path: str, label: str, kind: str, info: str):
    elem = "cfg-" + path.replace(".", "-").replace("_", "-")
    if kind == "bool":
        return gr.Checkbox(label=label, info=info, elem_id=elem, min_width=150)
    if kind == "choice":
        return gr.Dropdown(list(CHOICES[path]), label=label, info=info, elem_id=elem, min_width=150)
    if kind in ("number", "int"):
        return gr.Number(label=label, info=info, precision=0 if kind == "int" else None, elem_id=elem, min_width=150)
    return gr.Textbox(label=label, info=info, elem_id=elem, min_width=150)


def describe(cfg: RunConfig) -> str:
    rounds = ", ".join(str(cfg.prompts_for_round(i)) for i in range(1, cfg.rounds + 1)) or "none"
    tune = f"LoRA r{cfg.lora.r}" if cfg.lora.enabled else "full fine-tune"
    gate = ", review gate on" if cfg.review_gate else ""
    return (f"✓ valid: model `{cfg.model}`, {cfg.rounds} rounds (prompts {rounds}), β {cfg.beta:g}, "
            f"lr {cfg.lr:g}, {tune}, judge {cfg.judge.kind}{gate}")


def _counts_md(db: str, project: str) -> str:
    if not project:
        return "No project selected."
    try:
        s = actions.project_summary(db, project)
    except ActionError as e:
        return str(e)
    ex = s["examples"]
    return (f"**{s['project']}** · seed pairs **{ex['seed']}** · pool prompts **{ex['pool']}** · "
            f"eval pairs **{ex['eval']}** · runs **{s['jobs']}**")


def _issues_frame(report: actions.ImportReport) -> pd.DataFrame:
    rows = [{"file": i["file"], "line": "" if i["line"] is None else f"{i['unit']} {i['line']}",
             "field": i["field"], "message": i["message"]} for i in report.issues[:50]]
    return pd.DataFrame(rows, columns=["file", "line", "field", "message"])


def _preview_md(report: actions.ImportReport) -> str:
    if not report.ok:
        return (f"✗ **{report.file}** cannot be imported as **{report.role}**: {len(report.issues)} problem(s) "
                "below. Nothing will be imported until the file is fixed.")
    extra = ""
    if report.duplicates:
        extra += f" · {len(report.duplicates)} duplicate rows will be skipped"
    if report.skipped:
        extra += f" · {len(report.skipped)} defective rows will be skipped"
    return (f"✓ **{report.file}**: format **{report.format}**, {report.rows_read} rows read, "
            f"**{report.examples}** {report.role} rows to import{extra}.")


def build(db: str, project: gr.Dropdown) -> ProjectTab:
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=380):
            gr.Markdown("### Data")
            counts = gr.Markdown(elem_id="project-counts")
            role = gr.Radio(["seed", "pool", "eval"], value="seed", label="Import as",
                            info="seed: labelled pairs to start from · pool: prompts for the rounds · eval: held-out pairs")
            upload = gr.File(label="Data file (JSONL, JSON, CSV, Parquet)", file_types=FILE_TYPES, type="filepath",
                             elem_id="import-file", height=120)
            preview = gr.Markdown(elem_id="import-preview")
            first_rows = gr.Dataframe(label="First rows", visible=False, interactive=False, wrap=True,
                                      max_height=260, elem_id="import-first-rows")
            issues = gr.Dataframe(label="Problems (file, line, field)", visible=False, interactive=False, wrap=True,
                                  max_height=260, elem_id="import-issues")
            import_btn = gr.Button("Import", variant="primary", elem_id="import-button", interactive=False)
            import_result = gr.Markdown(elem_id="import-result")
        with gr.Column(scale=7, min_width=480):
            gr.Markdown("### Run configuration")
            fields = []
            for row in FORM_ROWS:
                with gr.Row(equal_height=True):
                    for path, label, kind, info in row:
                        fields.append(_field(path, label, kind, info))
            status = gr.Markdown(elem_id="config-status")
            editor = gr.Code(language="yaml", label="Full configuration (YAML)", lines=16, max_lines=28,
                             elem_id="config-yaml", interactive=True)
            with gr.Row():
                validate_btn = gr.Button("Validate", elem_id="config-validate", min_width=100)
                name = gr.Textbox(value="run", label="Name", show_label=False, placeholder="configuration name",
                                  container=False, min_width=140, elem_id="config-name")
                save_btn = gr.Button("Save configuration", variant="primary", elem_id="config-save", min_width=140)
            with gr.Row():
                saved = gr.Dropdown(label="Saved configurations", choices=[], elem_id="config-saved", scale=3)
                load_btn = gr.Button("Load", elem_id="config-load", min_width=80, scale=1)
                upload_yaml = gr.UploadButton("Open YAML file…", file_types=[".yaml", ".yml"], type="filepath",
                                              min_width=120, scale=1)
                download = gr.DownloadButton("Download YAML", value=None, min_width=120, scale=1,
                                             elem_id="config-download")
            command = gr.Code(language="shell", label="The same run from a terminal", lines=1, interactive=False,
                              elem_id="config-command")
            train_command = gr.Code(language="shell", label="Training stage command line "
                                    "(from train.num_gpus and train.strategy)", lines=1, interactive=False,
                                    elem_id="config-train-command")

    # import ------------------------------------------------------------------------------------------
    def on_preview(path, role_):
        if not path:
            return "", gr.update(visible=False), gr.update(visible=False), gr.update(interactive=False), ""
        try:
            report = actions.preview_import(path, role_)
        except ActionError as e:
            return f"✗ {e}", gr.update(visible=False), gr.update(visible=False), gr.update(interactive=False), ""
        rows = pd.DataFrame(report.first_rows, columns=["line", "prompt", "chosen", "rejected"])
        if role_ == "pool":
            rows = rows[["line", "prompt"]]
        return (_preview_md(report), gr.update(value=rows, visible=report.ok),
                gr.update(value=_issues_frame(report), visible=not report.ok),
                gr.update(interactive=report.ok), "")

    preview_outputs = [preview, first_rows, issues, import_btn, import_result]
    upload.change(on_preview, [upload, role], preview_outputs, show_progress="minimal", api_visibility="private")
    role.change(on_preview, [upload, role], preview_outputs, show_progress="minimal", api_visibility="private")

    def on_import(path, role_, project_):
        if not path:
            return "Choose a file first.", gr.skip(), gr.skip()
        try:
            report = actions.import_file(db, path, project_, role_)
        except ActionError as e:
            return f"✗ {e}", gr.skip(), gr.skip()
        if not report.ok:
            return ("✗ Nothing imported: the file has problems (see the table above).",
                    gr.update(value=_issues_frame(report), visible=True), _counts_md(db, project_))
        already = f", {report.already_present} already in the project" if report.already_present else ""
        dups = f", {len(report.duplicates)} duplicates skipped" if report.duplicates else ""
        return (f"✓ Imported **{report.added}** {role_} rows into **{report.project}** "
                f"(format {report.format}{already}{dups}).", gr.skip(), _counts_md(db, project_))

    import_btn.click(on_import, [upload, role, project], [import_result, issues, counts], api_visibility="private")

    # configuration -----------------------------------------------------------------------------------
    def values_from(text):
        """Form values, status and command for a YAML text (the form keeps its values if it does not validate)."""
        try:
            cfg = actions.validate_config(text)
        except ActionError as e:
            return [gr.skip()] * len(fields) + [f"✗ {e}"]
        return [_shown(kind, _get(cfg, path)) for path, _, kind, _ in FORM_FIELDS] + [describe(cfg)]

    def command_for(project_, name_):
        if not project_:
            return ""
        path = actions.config_file(db, project_, name_ or "run")
        return actions.run_command(db, path) + "    # after “Save configuration”"

    def on_project(project_, name_):
        text = actions.latest_config(db, project_) if project_ else ""
        configs = actions.saved_configs(db, project_) if project_ else []
        choices = [(f"#{c['id']} {c['name']} ({c['created_at'][:16].replace('T', ' ')})", c["id"]) for c in configs]
        latest_name = configs[-1]["name"] if configs else (name_ or "run")
        return ([text] + values_from(text) + [gr.update(choices=choices, value=choices[-1][1] if choices else None),
                latest_name, command_for(project_, latest_name), _counts_md(db, project_)])

    project.change(on_project, [project, name], [editor] + fields + [status, saved, name, command, counts],
                   show_progress="hidden", api_visibility="private")

    def on_form(text, *values):
        try:
            new = form_to_yaml(text, list(values))
        except ActionError as e:
            return gr.skip(), f"✗ {e}"
        try:
            return new, describe(actions.validate_config(new))
        except ActionError as e:
            return new, f"✗ {e}"

    gr.on([f.input for f in fields], on_form, [editor] + fields, [editor, status], show_progress="hidden",
          api_visibility="private")
    validate_btn.click(values_from, [editor], fields + [status], api_visibility="private")
    editor.blur(values_from, [editor], fields + [status], show_progress="hidden", api_visibility="private")

    def on_save(project_, name_, text):
        try:
            saved_ = actions.save_config(db, project_, name_, text)
        except ActionError as e:
            return gr.skip(), f"✗ Not saved: {e}", gr.skip(), gr.skip(), gr.skip()
        configs = actions.saved_configs(db, project_)
        choices = [(f"#{c['id']} {c['name']} ({c['created_at'][:16].replace('T', ' ')})", c["id"]) for c in configs]
        tmp = Path(tempfile.mkdtemp(prefix="spa-config-")) / Path(saved_["path"]).name
        tmp.write_text(saved_["yaml"], encoding="utf-8")
        return (saved_["yaml"], f"✓ Saved as configuration #{saved_['id']} and written to `{saved_['path']}`",
                gr.update(choices=choices, value=saved_["id"]), saved_["command"], gr.update(value=str(tmp)))

    save_btn.click(on_save, [project, name, editor], [editor, status, saved, command, download],
                   api_visibility="private")
    name.change(command_for, [project, name], [command], show_progress="hidden", api_visibility="private")

    def on_load(project_, config_id):
        chosen = next((c for c in actions.saved_configs(db, project_) if c["id"] == config_id), None)
        if chosen is None:
            return [gr.skip()] * (len(fields) + 3) + ["Choose a saved configuration."]
        *values, message = values_from(chosen["yaml"])
        return [chosen["yaml"]] + values + [chosen["name"], command_for(project_, chosen["name"]), message]

    load_btn.click(on_load, [project, saved], [editor] + fields + [name, command, status], api_visibility="private")

    def on_open(path):
        text = Path(path).read_text(encoding="utf-8", errors="replace") if path else ""
        return [text] + values_from(text) + [Path(path).stem if path else "run"]

    upload_yaml.upload(on_open, [upload_yaml], [editor] + fields + [status, name], api_visibility="private")
    editor.change(lambda text: actions.train_command(db, text), [editor], [train_command], show_progress="hidden",
                  api_visibility="private")
    return ProjectTab(yaml_editor=editor, counts=counts)
