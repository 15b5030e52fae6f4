"""Data files: validate one as seed, pool or eval rows without writing (preview), import it all or nothing (both
refuse a file over MAX_UPLOAD_MB), and page through a project's imported rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.actions.lookups import ActionError, opened, project_of, shortened
from app.actions.paths import MAX_UPLOAD_MB
from app.actions.projects import create_project
from storage import Example
from storage.records import ROLES

MAX_PAGE_SIZE = 500  # imported rows one API page may hold
MAX_BYTES = MAX_UPLOAD_MB * 2**20


@dataclass
class ImportReport:
    ok: bool
    file: str
    role: str
    format: str = ""
    rows_read: int = 0
    examples: int = 0
    first_rows: list[dict] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)  # file, line, unit, field, message
    duplicates: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    added: int = 0
    already_present: int = 0
    project: str = ""


def _issue(issue, shown_name: str) -> dict:
    return {
        "file": shown_name,
        "line": issue.line,
        "unit": issue.unit,
        "field": issue.field or "",
        "message": issue.message,
    }


def _check_import_args(path: str, role: str) -> None:
    if role not in ROLES:
        raise ActionError(f"role must be one of {', '.join(ROLES)}")
    if not path or not Path(path).exists():
        raise ActionError(f"no such file: {path}")


def preview_import(path: str, role: str, shown_name: str | None = None, rows: int = 5) -> ImportReport:
    """Validate a file as `role` without writing anything: detected format, row count, first rows, every error
    with file, line and field."""
    from engine.data.importers import ImportFailed, load_examples

    _check_import_args(path, role)
    name = shown_name or Path(path).name
    try:
        result = load_examples(path, role, MAX_BYTES)
    except ImportFailed as e:
        return ImportReport(ok=False, file=name, role=role, issues=[_issue(i, name) for i in e.issues])
    first = [
        {
            "line": ex.source_line,
            "prompt": shortened(ex.prompt_text),
            "chosen": shortened(ex.chosen),
            "rejected": shortened(ex.rejected),
        }
        for ex in result.examples[:rows]
    ]
    return ImportReport(
        ok=True,
        file=name,
        role=role,
        format=result.format,
        rows_read=result.rows_read,
        examples=len(result.examples),
        first_rows=first,
        duplicates=[_issue(i, name) for i in result.duplicates],
        skipped=[_issue(i, name) for i in result.skipped],
    )


def import_file(db: str, path: str, project: str, role: str, shown_name: str | None = None) -> ImportReport:
    """Validate and import a whole file, all or nothing; the project is created when it does not exist."""
    from engine.data.importers import ImportFailed, load_examples

    _check_import_args(path, role)
    name = shown_name or Path(path).name
    try:
        result = load_examples(path, role, MAX_BYTES)
    except ImportFailed as e:
        return ImportReport(
            ok=False, file=name, role=role, issues=[_issue(i, name) for i in e.issues], project=project
        )
    for ex in result.examples:  # where the rows came from, not Gradio's upload folder
        ex.source_file = name
    name_ok = create_project(db, project)["name"]  # validates the name; creates the project when new
    with opened(db) as store:
        proj = project_of(store, name_ok)
        added, already = store.add_examples(proj.id, result.examples)
    return ImportReport(
        ok=True,
        file=name,
        role=role,
        format=result.format,
        rows_read=result.rows_read,
        examples=len(result.examples),
        duplicates=[_issue(i, name) for i in result.duplicates],
        skipped=[_issue(i, name) for i in result.skipped],
        added=added,
        already_present=already,
        project=proj.name,
    )


def _examples(db: str, project: str, role: str, offset: int, limit: int) -> tuple[list[Example], int]:
    if role not in ROLES:
        raise ActionError(f"role must be one of {', '.join(ROLES)}")
    with opened(db) as store:
        proj = project_of(store, project)
        return store.examples(proj.id, role, limit=limit, offset=max(0, int(offset))), store.count_examples(
            proj.id, role
        )


def examples_page(db: str, project: str, role: str, offset: int = 0, limit: int = 50) -> tuple[list[dict], int]:
    """Imported rows of one role (seed pairs, pool prompts, eval pairs), in import order, shortened for a table,
    and their count."""
    rows, total = _examples(db, project, role, offset, limit)
    return [
        {
            "line": f"{Path(ex.source_file).name}:{ex.source_line}",
            "prompt": shortened(ex.prompt_text, 200),
            "chosen": shortened(ex.chosen, 160),
            "rejected": shortened(ex.rejected, 160),
        }
        for ex in rows
    ], total


def imported_rows(db: str, project: str, role: str, page: int = 0, page_size: int = 50) -> dict:
    """One page of a project's imported rows of one role, whole (the prompt as chat messages; chosen and rejected
    None for a pool prompt or a seed prompt), in import order, with the file and line each came from."""
    if not 1 <= int(page_size) <= MAX_PAGE_SIZE:
        raise ActionError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size}")
    if int(page) < 0:
        raise ActionError(f"page must be 0 or more, got {page}")
    rows, total = _examples(db, project, role, int(page) * int(page_size), int(page_size))
    return {
        "project": (project or "").strip(),
        "role": role,
        "total": total,
        "page": int(page),
        "page_size": int(page_size),
        "pages": -(-total // int(page_size)),
        "rows": [
            {
                "id": ex.id,
                "file": Path(ex.source_file).name,
                "line": ex.source_line,
                "prompt": ex.prompt,
                "chosen": ex.chosen,
                "rejected": ex.rejected,
            }
            for ex in rows
        ],
    }
