"""How often people agree, as the Insight tab and the API report it: on pairs two or more people labelled (each
person's latest label not undone; a, b, tie and both_bad are four answers), per pair of people n, raw agreement
and Cohen's κ, Krippendorff's α when three or more people labelled them, and each person's agreement with the
self-judge (on a or b answers; ties and both-bad apart). Formulas: engine.method.agreement."""

from __future__ import annotations

from app.actions.lookups import ActionError, opened, project_of, run_of
from engine.method.agreement import reviewer_agreement as agreement_of


def reviewer_agreement(db: str, project: str, job_id: int | None = None, round_index: int | None = None) -> dict:
    """The agreement of a project's people (of one run, or one round of it, when given), JSON-ready: people,
    shared (pairs two or more labelled), pairwise [{first, second, n, agree, kappa}], alpha (None under three
    people or where undefined), with_judge {person: {agree, lo, hi, n, ties, both_bad}}."""
    with opened(db) as store:
        proj = project_of(store, project)
        job_id = run_of(store, proj, job_id)
        if round_index in (None, ""):
            round_index = None
        elif str(round_index).strip().isdigit() and int(round_index) in store.pair_rounds(proj.id, job_id):
            round_index = int(round_index)
        else:
            where = f"run {job_id}" if job_id is not None else f"project {proj.name!r}"
            raise ActionError(f"{where} has no judged pairs in round {round_index}")
        labels, judge = store.project_labels_by_person(proj.id, job_id, round_index)
    seen = agreement_of(labels, judge)
    return {
        "job_id": job_id,
        "round": round_index,
        "people": seen.people,
        "shared": seen.shared,
        "pairwise": [
            {"first": p.first, "second": p.second, "n": p.n, "agree": p.agree, "kappa": p.kappa} for p in seen.pairwise
        ],
        "alpha": seen.alpha,
        "with_judge": {
            person: {"agree": e.agree, "lo": e.lo, "hi": e.hi, "n": e.n, "ties": e.ties, "both_bad": e.both_bad}
            for person, e in seen.with_judge.items()
        },
    }
