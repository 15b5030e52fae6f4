"""The Insight tab's table of how often people agree (app.actions.agreement): each pair of people on the pairs both
labelled (n, raw agreement, Cohen's κ), then each person against the self-judge, and Krippendorff's α above it."""

from __future__ import annotations

import pandas as pd

from app import actions
from app.actions import ActionError

AGREEMENT_COLUMNS = ["who", "pairs", "agreement", "Cohen's κ"]
CAPTION = (
    "**People's agreement**: on pairs two or more people labelled, each one's latest label (a, b, tie and both bad "
    "are four answers), per two people the pairs both labelled, how often they gave the same answer and Cohen's "
    "κ (0 = chance, 1 = always agree); with three or more people, Krippendorff's α over them all. Below, each "
    "person against the self-judge on the pairs they decided a or b (ties and both bad apart), with a 95% "
    "interval. Where people disagree, the majority's label trains; a tie between them leaves the pair out."
)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def agreement_table(seen: dict) -> pd.DataFrame:
    """Rows of actions.reviewer_agreement: each pair of people, then each person against the self-judge."""
    rows = [
        [f"{p['first']} · {p['second']}", p["n"], _share(p["agree"]), _number(p["kappa"])] for p in seen["pairwise"]
    ]
    for person, e in seen["with_judge"].items():
        apart = f" ({e['ties']} tie, {e['both_bad']} both bad apart)" if e["ties"] or e["both_bad"] else ""
        interval = f" ({e['lo']:.0%}–{e['hi']:.0%})" if e["n"] else ""
        rows.append([f"{person} · self-judge", f"{e['n']}{apart}", _share(e["agree"]) + interval, "–"])
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def agreement_info(seen: dict) -> str:
    if not seen["people"]:
        return "_No pair has a person's label yet._"
    shared = f"{seen['shared']} pairs labelled by two or more people"
    if seen["alpha"] is not None:
        return f"{shared} · Krippendorff's α {seen['alpha']:.3f} ({len(seen['people'])} people)"
    return shared + (" · α needs three or more people" if seen["shared"] else "")


def agreement_view(db: str, project: str | None, job_id: int | None) -> tuple[pd.DataFrame, str]:
    """The table and its line for a project (or one of its runs); the refusal's text where there is one."""
    if not project:
        return pd.DataFrame(columns=AGREEMENT_COLUMNS), ""
    try:
        seen = actions.reviewer_agreement(db, project, job_id)
    except ActionError as e:
        return pd.DataFrame(columns=AGREEMENT_COLUMNS), str(e)
    return agreement_table(seen), agreement_info(seen)
