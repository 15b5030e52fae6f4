"""Where an export writes: the destination checked before anything is written, and a hidden temp folder beside
it, renamed into place at the end, so a failed or killed export leaves no partial folder; the next export
clears what a killed one left behind."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Iterator

import psutil

from engine.data.export.records import ExportError

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})  # loading these can run code


def destination(out: str, root: str | None = None) -> Path:
    """`out` itself, with `~`, symlinks and `..` resolved. With `root` (the studio's export folder) the resolved
    path must lie under the resolved root: the check runs on where the path really leads, so no `..`, absolute
    path, `~` or symlink inside the root can carry an export out of it. A `..` in `out` is refused either way."""
    if not str(out).strip():
        raise ExportError("out is empty: name the folder to export into")
    target = Path(out).expanduser().resolve()
    if root is not None:
        base = Path(root).expanduser().resolve()
        if target == base or base not in target.parents:
            raise ExportError(f"refusing to export to {out!r}: it leads to {target}, outside the export folder {base}")
    if ".." in Path(out).parts:
        raise ExportError(f"out must not contain '..' (got {out!r}): name the export folder directly")
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder")
    return target


def refuse_protected(out: Path, sources: list[Path]) -> None:
    """Replacing `out` must never delete what the export reads, the database, the home folder or the cwd."""
    for keep in sources + [Path.home(), Path.cwd()]:
        keep = keep.expanduser().resolve()
        if out == keep or out in keep.parents:
            raise ExportError(f"refusing to export into {out}: replacing it would delete {keep}")


def check_empty(out: Path, force: bool) -> None:
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; choose a new folder or pass force (--force) to replace it")


def inside(root: Path, name: str) -> Path:
    """A file named from data (an artifact's file list) must land under the export folder, nowhere else."""
    target = (root / name).resolve()
    if target == root or root not in target.parents:
        raise ExportError(f"refusing to write {name!r}: it would land outside the export folder")
    return target


def _exporter_alive(pid: int) -> bool:
    """Whether the export that named a temp folder with its process id may still be writing it (a zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _clean_stale(out: Path) -> None:
    """Remove temp folders that killed exports into `out` left; those of exports still running are kept."""
    for kind in ("tmp", "old"):
        for leftover in out.parent.glob(f".{glob_escape(out.name)}.{kind}-*"):
            match = re.match(rf"\.{re.escape(out.name)}\.{kind}-(\d+)-", leftover.name)
            if match and leftover.is_dir() and not leftover.is_symlink() and not _exporter_alive(int(match.group(1))):
                shutil.rmtree(leftover, ignore_errors=True)


def _audit(root: Path) -> None:
    """Last check before the rename: plain files only, all inside, and no pickles (safetensors only)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise ExportError(f"refusing to export a symbolic link: {path.relative_to(root)}")
            if path.suffix in PICKLE_SUFFIXES:
                raise ExportError(f"refusing to export a pickled file (safetensors only): {path.relative_to(root)}")


@contextmanager
def staging(out: Path, force: bool) -> Iterator[Path]:
    """A hidden temp folder beside `out` (same filesystem, so the final rename is atomic), named with this
    process id so a later export can tell a killed export's leftovers from a running one's."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as e:
        raise ExportError(f"could not write into {out.parent}: {e}") from e
    try:
        yield tmp
        _audit(tmp)
        _move_into_place(tmp, out, force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"could not write {out}: {e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    check_empty(out, force)
    old = out.with_name(f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
