"""Projects: the two demo projects, creating and listing projects, what a project holds, and its annotation
guidelines."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import yaml

from app.actions.job_queue import ACTIVE, job_status
from app.actions.lookups import ActionError, opened, project_of
from app.actions.paths import ROOT
from engine.runtime import text_setup
from engine.runtime.jobs import TEXT_WORLD
from storage import Job
from storage.records import ROLES

DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
DEMO_FALLBACK = "project: demo\nmodel: demo:model\n"  # the demo's configuration where configs/ is not shipped
TEXT_DEMO = "text-demo"  # the second demo project: SmolLM2-135M-Instruct with IFEval gold (the text world)
TEXT_DEMO_TITLE = "Instruction following, SmolLM2-135M"
TEXT_DEMO_CONFIG = ROOT / "configs" / "text_demo.yaml"
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def ensure_demo_project(db: str) -> bool:
    """On a fresh database, the demo project with configs/demo.yaml saved as its configuration (nothing is
    started). Returns whether it was created."""
    with opened(db) as store:
        if store.projects():
            return False
        text = DEMO_CONFIG.read_text(encoding="utf-8") if DEMO_CONFIG.is_file() else DEMO_FALLBACK
        project = store.ensure_project("demo", model="demo:model")
        store.save_config(project.id, "demo", text)
        return True


@dataclass
class TextDemoState:
    """Where the text demo project stands: offered (not set up and no setup job under way), being set up, or
    ready (its seed pairs imported). `job` is its newest setup job's status (job_status), if any."""

    exists: bool
    ready: bool
    offered: bool
    job: dict | None = None


def text_demo_state(db: str) -> TextDemoState:
    with opened(db) as store:
        proj = store.project(TEXT_DEMO)
        ready = bool(proj) and store.count_examples(proj.id, "seed") > 0
    job = setup_job(db, TEXT_DEMO)
    busy = job is not None and job["status"] in ACTIVE
    return TextDemoState(exists=proj is not None, ready=ready, offered=not ready and not busy, job=job)


def setup_job(db: str, project: str) -> dict | None:
    """The status (job_status) of the project's newest text world setup job; None when it has none."""
    with opened(db) as store:
        proj = store.project((project or "").strip())
        setups = [j.id for j in store.jobs(proj.id) if j.kind == TEXT_WORLD] if proj else []
    return job_status(db, setups[-1], log_lines=3) if setups else None


def open_text_demo(db: str) -> dict:
    """Open the demo project "Instruction following, SmolLM2-135M": created on first use with
    configs/text_demo.yaml as its configuration, and a background `text-world` job queued that fetches the model,
    builds (or finds cached) the text world and imports its seed pairs and pool prompts. Nothing is queued when
    the rows are already imported or a setup job is queued or running; after a failed one, a new one is.
    SPA_TEXT_WORLD_SIZE=mini asks for the mini world (tests), recorded in the job's request."""
    size = os.environ.get(text_setup.SIZE_ENV) or "full"
    if size not in text_setup.SIZES:
        raise ActionError(f"{text_setup.SIZE_ENV} must be one of {', '.join(text_setup.SIZES)}, not {size!r}")
    request = yaml.safe_dump(asdict(text_setup.TextSetupRequest(project=TEXT_DEMO, size=size)), sort_keys=False)
    with opened(db) as store, store.write():
        proj = store.project(TEXT_DEMO) or store.ensure_project(TEXT_DEMO, model="text:model")
        if not store.configs(proj.id):
            store.save_config(proj.id, TEXT_DEMO, TEXT_DEMO_CONFIG.read_text(encoding="utf-8"))
        busy = [j for j in store.jobs(proj.id, statuses=ACTIVE) if j.kind == TEXT_WORLD]
        job_id = None
        if store.count_examples(proj.id, "seed") == 0 and not busy:
            job_id = store.enqueue(Job(project_id=proj.id, kind=TEXT_WORLD, config_yaml=request))
            store.log(job_id, f"queued from the studio: set up project {TEXT_DEMO} ({size} text world)")
    return {"project": TEXT_DEMO, "job_id": job_id or (busy[0].id if busy else None), "queued": job_id is not None}


def project_names(db: str) -> list[str]:
    with opened(db) as store:
        return [p.name for p in store.projects()]


def create_project(db: str, name: str, model: str = "") -> dict:
    name = (name or "").strip()
    if not PROJECT_NAME.match(name):
        raise ActionError("a project name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    with opened(db) as store:
        project = store.ensure_project(name, model=(model or "").strip())
        return asdict(project)


def project_summary(db: str, project: str) -> dict:
    with opened(db) as store:
        proj = project_of(store, project)
        return {
            "project": proj.name,
            "model": proj.model,
            "examples": {role: store.count_examples(proj.id, role) for role in ROLES},
            "labels": store.label_source_counts(proj.id),
            "jobs": len(store.jobs(proj.id)),
        }


def guidelines(db: str, project: str) -> str:
    with opened(db) as store:
        return project_of(store, project).guidelines or ""


def save_guidelines(db: str, project: str, text: str) -> str:
    with opened(db) as store:
        store.set_guidelines(project_of(store, project).id, (text or "").strip())
    return guidelines(db, project)
