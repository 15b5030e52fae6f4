"""Exports a remote client takes home (the API's export endpoints). The grown dataset is exported at once under the
export folder and handed back as its data file (a `datasets` folder as a zip); a model or adapter export is queued
as a job (it loads weights: the worker's work) and, once done, its folder is handed back as a zip.

What is handed out is written into a fresh, randomly named folder under Gradio's upload folder, which Gradio serves
to the caller as it is (no second copy); folders older than KEEP_DOWNLOADS_S go when the next one is made."""

from __future__ import annotations

import os
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from app.actions.job_queue import queue_export
from app.actions.lookups import ActionError, job_of, opened
from app.actions.paths import export_folder, export_root, upload_folder
from engine.config import ConfigError
from engine.data.export import ExportError, ExportRequest, export
from engine.data.export.records import DATA_FILES
from engine.data.export.staging import destination
from engine.runtime.jobs import EXPORT, job_request

DOWNLOADS = "spa-downloads"  # under Gradio's upload folder
KEEP_DOWNLOADS_S = 3600.0  # a handed-out file stays this long for the client to fetch it
DENSE = {".safetensors", ".parquet", ".arrow", ".zip", ".gz"}  # zipped as stored: deflating them gains nothing


@dataclass
class Download:
    """An export on the server (`out`, under the export folder) and the files handed out for it: `file` (the data
    file, or the folder as a zip) and `card` (its README)."""

    what: str
    out: str
    file: str
    card: str
    job_id: int | None = None


def export_request(db: str, project: str, what: str, out: str = "", **fields) -> ExportRequest:
    """An export request as the Export tab makes one: `out` relative to the export folder and confined to it;
    empty: a new folder exports/PROJECT/WHAT-TIME."""
    if not out.strip():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        out = str(Path("exports") / project.strip() / f"{what}-{stamp}")
    root = export_root(db)
    return ExportRequest(project=project.strip(), what=what, out=export_folder(root, out), root=str(root), **fields)


def dataset_download(db: str, req: ExportRequest) -> Download:
    """Export the dataset (nothing is written when the request is refused) and hand out its data file, or the whole
    folder as a zip for format hf, with its card."""
    if req.what != "dataset":
        raise ActionError(f"what must be dataset here, got {req.what!r}: models and adapters export as jobs")
    try:
        out = export(db, req)
    except ExportError as e:
        raise ActionError(str(e)) from None
    folder = _fresh_folder()
    data = out / DATA_FILES[req.format] if req.format in DATA_FILES else None
    file = shutil.copyfile(data, folder / data.name) if data else _zip(out, folder / f"{out.name}.zip")
    card = shutil.copyfile(out / "README.md", folder / "README.md")
    return Download("dataset", str(out), str(file), str(card))


def queue_model_export(db: str, req: ExportRequest) -> int:
    """Queue a model or adapter export, checked first (unknown run or round, a folder that is not empty or not
    inside the export folder: refused, nothing queued)."""
    if req.what not in ("model", "adapter"):
        raise ActionError(f"what must be model or adapter, got {req.what!r}")
    return queue_export(db, req)


def model_download(db: str, job_id: int) -> Download:
    """A finished model or adapter export job's folder as a zip (with its model card)."""
    with opened(db) as store:
        job = job_of(store, job_id)
    if job.kind != EXPORT:
        raise ActionError(f"job {job.id} is a {job.kind} job, not an export")
    try:
        req: ExportRequest = job_request(job)
    except ConfigError as e:
        raise ActionError(str(e)) from None
    if job.status != "done":
        why = f" ({job.error})" if job.error else ""
        raise ActionError(
            f"export job {job.id} is {job.status}{why}: its file can be downloaded once it is done (see job_status)"
        )
    try:  # where it wrote, confined to today's export folder
        out = destination(req.out, str(export_root(db)))
    except ExportError as e:
        raise ActionError(str(e)) from None
    if not (out / "README.md").is_file():
        raise ActionError(f"export job {job.id} wrote {out}, which is no longer there")
    folder = _fresh_folder()
    card = shutil.copyfile(out / "README.md", folder / "README.md")
    return Download(req.what, str(out), str(_zip(out, folder / f"{out.name}.zip")), str(card), job.id)


def _fresh_folder() -> Path:
    """A new folder for one download, after clearing the ones past KEEP_DOWNLOADS_S."""
    base = upload_folder() / DOWNLOADS
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        if old.is_dir() and not old.is_symlink() and time.time() - old.stat().st_mtime > KEEP_DOWNLOADS_S:
            shutil.rmtree(old, ignore_errors=True)
    folder = base / secrets.token_hex(16)  # unguessable: Gradio serves what lies under its upload folder
    folder.mkdir()
    return folder


def _zip(src: Path, target: Path) -> Path:
    """`src` as a zip whose entries lie under one folder named like it; written aside, then renamed into place."""
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w") as z:
        for folder, _, files in os.walk(src):
            for name in sorted(files):
                path = Path(folder) / name
                method = zipfile.ZIP_STORED if path.suffix in DENSE else zipfile.ZIP_DEFLATED
                z.write(path, Path(src.name) / path.relative_to(src), method)
    return partial.rename(target)
