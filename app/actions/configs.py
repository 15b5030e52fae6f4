"""Run configurations: validate one, save it (database and YAML file), read the saved ones back, and the
starting point of a project that has none."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.actions.lookups import ActionError, opened, project_of
from engine.config import ConfigError, RunConfig, parse_config


def validate_config(text: str) -> RunConfig:
    """Parse and check a run configuration; ActionError carries the line and key of the first problem."""
    try:
        return parse_config(text or "", "config")
    except ConfigError as e:
        raise ActionError(str(e)) from None


def validate_config_or_none(text: str) -> RunConfig | None:
    try:
        return parse_config(text, "config") if text else None
    except ConfigError:
        return None


def with_project(text: str, project: str) -> str:
    """The YAML with its `project` key set to the studio's project (comments are kept only when it already
    matches)."""
    data = yaml.safe_load(text or "") or {}
    if not isinstance(data, dict) or data.get("project") == project:
        return text
    data = {"project": project, **{k: v for k, v in data.items() if k != "project"}}
    return yaml.safe_dump(data, sort_keys=False)


def config_file(db: str, project: str, name: str) -> Path:
    """Where a saved configuration is also written as YAML: beside the database, under runs/PROJECT/configs/
    (runs/ is where runs write too, and is kept out of git)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip() or "run").strip("._") or "run"
    return Path(db).resolve().parent / "runs" / project / "configs" / f"{safe}.yaml"


def run_command(db: str, config_path: str | Path) -> str:
    return f"python launch.py run {config_path} --db {db}"


def train_command(db: str, text: str) -> str:
    """The command line the worker builds for a training stage of this configuration (accelerate launch
    past one GPU); empty while the YAML does not validate."""
    from engine.runtime.distributed import shown_train_command

    try:
        return shown_train_command(validate_config(text), db)
    except (ActionError, ValueError, FileNotFoundError):
        return ""


def save_config(db: str, project: str, name: str, text: str) -> dict:
    """Validate, store in the database (configs table) and write the YAML file; returns its id and path."""
    name = (name or "").strip() or "run"
    cfg = validate_config(text)
    with opened(db) as store:
        proj = project_of(store, project)
        text = with_project(text, proj.name)
        config_id = store.save_config(proj.id, name, text)
        store.ensure_project(proj.name, model=cfg.model)
    path = config_file(db, proj.name, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return {"id": config_id, "name": name, "path": str(path), "yaml": text, "command": run_command(db, path)}


def saved_configs(db: str, project: str) -> list[dict]:
    with opened(db) as store:
        proj = store.project((project or "").strip())
        return store.configs(proj.id) if proj else []


def latest_config(db: str, project: str) -> str:
    """The project's last saved configuration, or a starting point that runs on its own data."""
    configs = saved_configs(db, project)
    return configs[-1]["yaml"] if configs else default_config(db, project)


def default_config(db: str, project: str) -> str:
    """A valid configuration for a project that has none: its model (the demo model until one is chosen), the
    method's defaults, and as many prompts per round as its imported pool holds for three rounds. The data are
    the project's imported rows, so no data file is named."""
    with opened(db) as store:
        proj = store.project((project or "").strip())
        model = (proj.model if proj else "") or "demo:model"
        pool = store.count_examples(proj.id, "pool") if proj else 0
    cfg = RunConfig(project=(project or "").strip() or "default", model=model)
    if pool:
        cfg.prompts_per_round = max(1, pool // cfg.rounds)
    return cfg.to_yaml()
