"""Where the studio may read and write on its machine: the data roots a path given to the API must lie under,
the file a client uploaded, the folder every studio export lands under, and Gradio's upload folder (where
downloads are handed out from)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from app.actions.lookups import ActionError

ROOT = Path(__file__).resolve().parents[2]  # the repository: configs/, and runs whose output_dir is relative
MAX_UPLOAD_MB = 200  # the studio's cap on one data file, browser upload or API (Gradio's max_file_size too)


def upload_folder() -> Path:
    """Gradio's upload folder (its GRADIO_TEMP_DIR), where uploads land and whose files it serves as downloads."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").expanduser().resolve()


def data_roots(db: str) -> list[Path]:
    """Folders whose files the API may read (preview, import): the database's folder (the project's), Gradio's
    upload folder, and any listed in SPA_DATA_ROOTS (separated by the OS path separator)."""
    extra = [p for p in os.environ.get("SPA_DATA_ROOTS", "").split(os.pathsep) if p]
    return [Path(p).expanduser().resolve() for p in (Path(db).parent, upload_folder(), *extra)]


def export_root(db: str) -> Path:
    """The folder every studio export lands under: SPA_EXPORT_ROOT, or the database's folder."""
    return Path(os.environ.get("SPA_EXPORT_ROOT") or Path(db).parent).expanduser().resolve()


def export_folder(root: Path, out: str) -> str:
    """The folder a person named for an export: a relative one is taken inside the export root. The export itself
    refuses any folder that resolves outside the root (`..`, links, absolute paths elsewhere)."""
    out = (out or "").strip()
    return str(root / Path(out).expanduser()) if out else ""


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


def received_file(db: str, file: str | dict | None) -> tuple[str, str]:
    """The local path and shown name of a data file an API call names: a path on this machine under the data roots,
    or a file the client uploaded (gradio_client's `handle_file`, which reaches the endpoint as Gradio's FileData:
    a dict whose path Gradio has checked lies in its upload folder; checked here again)."""
    if isinstance(file, dict):
        path = str(file.get("path") or "")
        if not path:
            raise ActionError("the uploaded file came without a path: send it with gradio_client's handle_file")
        return readable_path(db, path), str(file.get("orig_name") or Path(path).name)
    if not file:
        raise ActionError("name a data file: a path on the studio's machine, or handle_file(path) to upload one")
    return readable_path(db, str(file)), Path(str(file)).name
