"""What every action shares: the refusal a person reads (ActionError), one `Store` per call (`opened`), finding a
project, job or pair by what the person gave, and a stored text shortened for a table cell."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from storage import Job, Pair, Project, Store


class ActionError(ValueError):
    """A request the studio refuses, with a message meant for the person who made it."""


@contextlib.contextmanager
def opened(db: str) -> Iterator[Store]:
    """One connection for one call: Gradio runs callbacks on a thread pool, and one SQLite connection must not be
    shared by concurrent transactions."""
    store = Store(db)
    try:
        yield store
    finally:
        store.close()


def project_of(store: Store, name: str) -> Project:
    name = (name or "").strip()
    if not name:
        raise ActionError("choose or create a project first")
    found = store.project(name)
    if found is None:
        raise ActionError(f"no project named {name!r}")
    return found


def job_of(store: Store, job_id) -> Job:
    try:
        return store.job(int(job_id))
    except (TypeError, ValueError, LookupError):
        raise ActionError(f"no run with id {job_id!r}") from None


def run_of(store: Store, proj: Project, job_id) -> int | None:
    """The run `job_id` names, refused unless it is one of the project's; None when none is named."""
    if job_id in (None, ""):
        return None
    job = job_of(store, job_id)
    if job.project_id != proj.id:
        raise ActionError(f"run {job.id} is not a run of project {proj.name!r}")
    return job.id


def pair_of(store: Store, pair_id) -> Pair:
    try:
        return store.pair(int(pair_id))
    except (TypeError, ValueError):
        raise ActionError(f"no pair {pair_id}") from None


def shortened(text: str | None, limit: int = 160) -> str:
    """One line of at most `limit` characters, for a table cell."""
    if text is None:
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
