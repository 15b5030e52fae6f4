"""The Project tab's form and its YAML editor as two views of one run configuration (pure functions, no Gradio).

What is queued: `form_yaml`, from the values every form field holds at the moment Queue is pressed, written
over the YAML's keys; the YAML supplies every key the form has no field for. Nothing the browser synchronises in
the background decides it, so a keystroke, a restored field or a sync still in flight cannot change what runs.
A YAML edit reaches the form when the editor loses focus (leaving the Project tab for the Run tab does that).

While editing, the two views follow each other through the *baseline*: the form values the server last wrote
into the form. `merged_yaml` writes into the YAML the form fields that differ from their baseline (edited in
the form since the last synchronisation) and keeps every other key as the YAML has it; Save uses it, so a YAML
edit the form has not caught up with is saved as typed."""

from __future__ import annotations

import json
import math
import typing
from dataclasses import Field, fields
from typing import NamedTuple

import yaml

from app.actions import ActionError
from engine.config import RunConfig


class FormField(NamedTuple):
    """A field of the form: its YAML key path, its short label and how its value is typed. Its explanation is the
    config field's own help text and range (`field_info`), never a second copy here."""

    path: str
    label: str
    kind: str


FORM_ROWS = [
    [FormField("model", "Model", "text")],
    [
        FormField("seed_data", "Seed pairs file", "text"),
        FormField("prompt_pool", "Prompt pool file", "text"),
        FormField("eval_data", "Eval pairs file", "text"),
    ],
    [
        FormField("beta", "β", "number"),
        FormField("learning_rate", "Learning rate", "optional"),
        FormField("epochs", "Seed epochs", "int"),
        FormField("rounds", "Rounds", "int"),
        FormField("prompts_per_round", "Prompts per round", "list_int"),
    ],
    [
        FormField("generation.samples_per_prompt", "Samples per prompt", "int"),
        FormField("generation.temperature", "Temperature", "number"),
        FormField("judge.kind", "Judge", "choice"),
        FormField("judge.reference", "Judge reference", "choice"),
        FormField("review_gate", "Review gate", "bool"),
    ],
    [
        FormField("refine.enabled", "Self-refinement", "bool"),
        FormField("refine.k_fraction", "Flag fraction K", "number"),
        FormField("refine.alpha", "Smoothing α", "number"),
        FormField("refine.lambdas", "Extrapolation λ per round", "list_float"),
        FormField("refine.warmup_fraction", "Warm-up", "number"),
    ],
    [
        FormField("lora.enabled", "LoRA", "bool"),
        FormField("lora.r", "LoRA r", "int"),
        FormField("lora.alpha", "LoRA α", "int"),
    ],
]
FORM_FIELDS = [f for row in FORM_ROWS for f in row]
LABELS = {f.path: f.label for f in FORM_FIELDS}
TYPED_KINDS = ("text", "optional", "number", "int", "list_int", "list_float")  # fields a person types into


def config_field(path: str) -> Field:
    """The RunConfig field at a key path ("refine.k_fraction"): where its help text and its range are stated."""
    owner = RunConfig
    *parents, leaf = path.split(".")
    for part in parents:
        owner = typing.get_type_hints(owner)[part]
    return {f.name: f for f in fields(owner)}[leaf]


def field_info(path: str) -> str:
    """What the form says under a field: the config field's help text, then its range where it has one."""
    metadata = config_field(path).metadata
    check = metadata.get("check")
    return f"{metadata['help']}; must be {check[1]}" if check else metadata["help"]


def elem_id(path: str) -> str:
    return "cfg-" + path.replace(".", "-").replace("_", "-")


def typed_values_js(leading: int) -> str:
    """A browser-side function for an event whose inputs are `leading` other components and then the form fields:
    it replaces each typed field's value by the text its box shows at the click (`parsed` reads it). Gradio hands
    an event the values it last synchronised from the page, and a box typed into a moment before the click can
    still be behind."""
    typed = json.dumps([elem_id(f.path) if f.kind in TYPED_KINDS else None for f in FORM_FIELDS])
    return f"""(...args) => {{
  const fields = {typed};
  const values = args.slice({leading}).map((v, i) => {{
    const box = fields[i] && document.querySelector('#' + fields[i] + ' input, #' + fields[i] + ' textarea');
    return box ? box.value : v;
  }});
  return [...args.slice(0, {leading}), ...values];
}}"""


def get(cfg: RunConfig, path: str):
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def shown(kind: str, value):
    """A configuration value as its form field shows it. Numbers too are shown as text, in text boxes: what the
    person typed is what `parsed` reads, never a number the browser rounded or parsed halfway."""
    if kind.startswith("list_"):
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "optional":  # empty is allowed in the form (the default); the parsed config holds the number
        return f"{value:g}"
    if kind in ("number", "int"):
        return str(value)
    return value


def form_values(cfg: RunConfig) -> list:
    return [shown(f.kind, get(cfg, f.path)) for f in FORM_FIELDS]


def parsed(kind: str, label: str, value):
    """A form value as YAML wants it; ActionError names the field when it does not parse."""
    try:
        if kind == "int":
            if value in (None, ""):
                return None
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if kind in ("number", "optional"):
            if value in (None, ""):
                return None
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind == "list_int":
            items = [int(v) for v in str(value).replace(";", ",").split(",") if v.strip()]
            return items[0] if len(items) == 1 else items
        if kind == "list_float":
            return [float(v) for v in str(value).replace(";", ",").split(",") if v.strip()]
    except (TypeError, ValueError):
        raise ActionError(f"{label}: {value!r} is not a valid value") from None
    return value


def _load(text: str) -> dict:
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as e:
        raise ActionError(f"the YAML does not parse, fix it before using the form: {e}") from None
    if not isinstance(data, dict):
        raise ActionError("the YAML must be a mapping of keys")
    return data


def _put(data: dict, path: str, label: str, kind: str, value) -> None:
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    value = parsed(kind, label, value)
    if value is None and kind in ("number", "int", "optional"):
        node.pop(leaf, None)  # back to the default
    else:
        node[leaf] = value


def _same(kind: str, a, b) -> bool:
    """Whether two form values are the same setting (Number fields come back as int or float)."""
    if kind in ("number", "int", "optional"):
        try:
            return (a in (None, "") and b in (None, "")) or float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == str(b)
    if kind == "bool":
        return bool(a) == bool(b)
    return str("" if a is None else a).strip() == str("" if b is None else b).strip()


def edited_fields(baseline: list | None, values: list) -> list[int]:
    """Indexes of the form fields edited since the server last wrote the form (all of them without a baseline)."""
    if not baseline or len(baseline) != len(values):
        return list(range(len(values)))
    return [
        i for i, (field, old, new) in enumerate(zip(FORM_FIELDS, baseline, values)) if not _same(field.kind, old, new)
    ]


def merged_yaml(text: str, baseline: list | None, values: list) -> str:
    """The configuration the person sees: the YAML with the form fields edited since the last sync written in."""
    changed = edited_fields(baseline, values)
    if not changed:
        return text
    data = _load(text)
    for i in changed:
        path, label, kind = FORM_FIELDS[i]
        _put(data, path, label, kind, values[i])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def form_yaml(text: str, values: list) -> str:
    """The configuration as the form shows it: every form field's value written over the YAML, whose other keys
    stay. ActionError names a field whose value does not parse."""
    return merged_yaml(text, None, values)


def baseline_json(values: list) -> str:
    return json.dumps(values)


def baseline_of(text: str | None) -> list | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def named(message: str) -> str:
    """A configuration error with the form's name of the key in front, when the key has a form field."""
    for path, label in sorted(LABELS.items(), key=lambda kv: -len(kv[0])):
        if f"key '{path}'" in message:
            return f"{label} ({path}): {message}"
    return message
