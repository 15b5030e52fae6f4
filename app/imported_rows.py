"""The Project tab's view of imported data: an import preview's issues and summary, and a page of a project's
imported rows by role."""

from __future__ import annotations

import pandas as pd

from app import actions
from app.actions import ActionError

DATA_PAGE = 50


def issues_frame(report: actions.ImportReport) -> pd.DataFrame:
    rows = [
        {
            "file": i["file"],
            "line": "" if i["line"] is None else f"{i['unit']} {i['line']}",
            "field": i["field"],
            "message": i["message"],
        }
        for i in report.issues[:50]
    ]
    return pd.DataFrame(rows, columns=["file", "line", "field", "message"])


def preview_md(report: actions.ImportReport) -> str:
    if not report.ok:
        return (
            f"✗ **{report.file}** cannot be imported as **{report.role}**: {len(report.issues)} problem(s) "
            "below. Nothing will be imported until the file is fixed."
        )
    extra = ""
    if report.duplicates:
        extra += f" · {len(report.duplicates)} duplicate rows will be skipped"
    if report.skipped:
        extra += f" · {len(report.skipped)} defective rows will be skipped"
    return (
        f"✓ **{report.file}**: format **{report.format}**, {report.rows_read} rows read, "
        f"**{report.examples}** {report.role} rows to import{extra}."
    )


def data_frame(rows: list[dict], role: str) -> pd.DataFrame:
    columns = ["line", "prompt"] if role == "pool" else ["line", "prompt", "chosen", "rejected"]
    return pd.DataFrame(rows, columns=["line", "prompt", "chosen", "rejected"])[columns]


def data_view(db: str, project: str, role: str, offset: int = 0):
    """The imported rows of one role, a page at a time, and the line that says which ones are shown."""
    if not project:
        return data_frame([], role), "No project selected.", 0
    try:
        rows, total = actions.examples_page(db, project, role, offset, DATA_PAGE)
    except ActionError as e:
        return data_frame([], role), f"✗ {e}", 0
    offset = min(max(0, offset), max(0, total - 1))
    if not total:
        return data_frame([], role), f"No {role} rows imported yet.", 0
    shown = f"{role} rows **{offset + 1}–{offset + len(rows)}** of **{total}**"
    return data_frame(rows, role), shown, offset
