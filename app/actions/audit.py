"""The blind audit as the studio reports it: per round of a run, how often the self-judge agreed with the person's
blind answers (the Review tab's audit order), with its 95% Wilson interval, n, and ties and both-bad apart
(engine.data.report.audit_estimates), and the Run tab's warning while that interval includes 0.5."""

from __future__ import annotations

from dataclasses import asdict

from app.actions.lookups import ActionError, job_of, opened, project_of
from engine.data.report import RoundAudit, audit_estimates, audit_warning
from engine.runtime.jobs import RUN
from storage import Store


def _audited_job(store: Store, project: str | None, job_id: int | None) -> int | None:
    """The run asked for, else the project's newest run with an audit sample (else its newest run)."""
    if job_id not in (None, ""):
        job = job_of(store, job_id)
        if project and job.project_id != project_of(store, project).id:
            raise ActionError(f"run {job.id} is not a run of project {project!r}")
        return job.id
    if not project:
        raise ActionError("name a project or a run")
    runs = [j.id for j in store.jobs(project_of(store, project).id) if j.kind == RUN]
    audited = [j for j in runs if store.audit_rounds(j)]
    return (audited or runs or [None])[-1]


def round_audit_row(audit: RoundAudit) -> dict:
    """One round's audit as JSON-ready numbers: round, sample (pairs drawn), answered (blind answers so far),
    agree (None before a decided answer), lo, hi (95% Wilson interval), n (decided answers), ties, both_bad,
    covers_half (the interval includes 0.5)."""
    return {"round": audit.round, "sample": audit.sample, "answered": audit.answered, **asdict(audit.estimate)}


def audit_estimate(
    db: str, project: str | None = None, job_id: int | None = None, round_index: int | None = None
) -> dict:
    """The blind audit of a run (job_id, or the project's newest audited run): per round (or the one round asked
    for) its estimate as round_audit_row, and the Run tab's warning (empty when none is due)."""
    with opened(db) as store:
        job = _audited_job(store, project, job_id)
        audits = audit_estimates(store, job) if job is not None else {}
    if round_index not in (None, "") and int(round_index) not in audits:
        raise ActionError(f"round {round_index} of run {job} has no audit sample")
    rows = [
        round_audit_row(a) for r, a in sorted(audits.items()) if round_index in (None, "") or r == int(round_index)
    ]
    return {"job_id": job, "rounds": rows, "warning": audit_warning(audits)}


def run_audit_warning(db: str, job_id: int) -> str:
    """The warning the Run tab shows for a run: empty unless its latest audited round's interval includes 0.5."""
    with opened(db) as store:
        return audit_warning(audit_estimates(store, job_of(store, job_id).id))
