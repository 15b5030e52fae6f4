"""Where the studio may read and write on its machine: the data roots a path given to the API must lie under,
and the folder every studio export lands under."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from app.actions.lookups import ActionError

ROOT = Path(__file__).resolve().parents[2]  # the repository: configs/, and runs whose output_dir is relative


def data_roots(db: str) -> list[Path]:
    """Folders whose files the API may read (preview, import): the database's folder (the project's), Gradio's
    upload folder, and any listed in SPA_DATA_ROOTS (separated by the OS path separator)."""
    uploads = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    extra = [p for p in os.environ.get("SPA_DATA_ROOTS", "").split(os.pathsep) if p]
    return [Path(p).expanduser().resolve() for p in (Path(db).parent, uploads, *extra)]


def export_root(db: str) -> Path:
    """The folder every studio export lands under: SPA_EXPORT_ROOT, or the database's folder."""
    return Path(os.environ.get("SPA_EXPORT_ROOT") or Path(db).parent).expanduser().resolve()


def readable_path(db: str, path: str) -> str:
    """`path` resolved (symlinks and `..` followed first), or ActionError when it lies outside every data root."""
    resolved = Path(path or ".").expanduser().resolve()
    roots = data_roots(db)
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ActionError(
            f"{path}: the studio reads files only under {', '.join(map(str, roots))} "
            "(upload the file, or add its folder to SPA_DATA_ROOTS)"
        )
    return str(resolved)
