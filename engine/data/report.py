"""The per-round table a run prints at the end (and the studio and benchmarks show)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.method.agreement import AgreementEstimate, audit_estimate, interval_text
from engine.runtime.auto_judge import AutoChoice, choices_from_metrics
from storage import Store

COLUMNS = [
    ("round", "round"),
    ("pairs", "round/pairs"),
    ("judge acc (eval)", "eval/judge_accuracy"),
    ("self-label acc (gold)", "round/self_label_accuracy"),
    ("flagged", "round/flagged_fraction"),
    ("chose less likely", "round/chose_less_likely"),
]
# Each world names its gold metrics its own way; a table shows the columns its run recorded.
GOLD_COLUMNS = [
    ("gold score", "eval/gold_score"),
    ("win rate vs SFT", "eval/win_rate_vs_init"),
    ("IFEval prompt strict", "text/eval/prompt_strict"),
    ("IFEval instr. loose", "text/eval/instruction_loose"),
    ("win rate vs SmolLM2", "text/eval/win_rate_vs_init"),
]
ROUND_METRIC_PREFIXES = ("eval/", "round/", "text/eval/")


@dataclass
class RoundRow:
    round: int
    values: dict[str, float]


def round_rows(store: Store, job_id: int) -> list[RoundRow]:
    rows: dict[int, dict[str, float]] = {}
    for m in store.metrics(job_id):
        if m.round is not None and m.name.startswith(ROUND_METRIC_PREFIXES):
            rows.setdefault(m.round, {})[m.name] = m.value
    return [RoundRow(r, v) for r, v in sorted(rows.items())]


def round_table(store: Store, job_id: int) -> str:
    """A Markdown table, one row per round, with the gold columns of the world the run was in and, once a round
    has a blind audit sample, the audit's agreement with its 95% interval and what it rests on."""
    rows = round_rows(store, job_id)
    audits = audit_estimates(store, job_id)
    autos = choices_from_metrics(store.metrics(job_id))
    rows += [RoundRow(r, {}) for r in {*audits, *autos} if r not in {row.round for row in rows}]
    rows.sort(key=lambda row: row.round)
    columns = COLUMNS + [c for c in GOLD_COLUMNS if any(c[1] in row.values for row in rows)]
    extra = (AUTO_COLUMNS if autos else []) + (AUDIT_COLUMNS if audits else [])
    head = "| " + " | ".join(title for title, _ in columns + extra) + " |"
    rule = "|" + "|".join("---" for _ in columns + extra) + "|"
    lines = [head, rule]
    for row in rows:
        cells = [str(row.round)]
        for _, key in columns[1:]:
            v = row.values.get(key)
            cells.append("" if v is None else (f"{v:.0f}" if key == "round/pairs" else f"{v:.3f}"))
        if autos:
            cells += auto_cells(autos.get(row.round))
        if audits:
            cells += audit_cells(audits.get(row.round))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# judge.kind auto (engine.runtime.auto_judge): the variant each round labelled with, and the figures behind it ----

AUTO_COLUMNS = [("auto judge", "auto"), ("its agree [95%], on", "auto_figures")]


def auto_cells(choice: AutoChoice | None) -> list[str]:
    if choice is None:
        return ["", ""]
    on = "judge-check pairs" if choice.basis == "judge_check" else "audit answers"
    figures = choice.figures.get(choice.variant)
    return [choice.variant, f"{interval_text(figures)}, {choice.n} {on}" if figures else on]


# the blind audit (engine.method.agreement): an unbiased estimate of each round's self-label accuracy --------------

AUDIT_COLUMNS = [("audit agree [95%]", "audit"), ("audit n (tie, both bad)", "audit_n")]


@dataclass(frozen=True)
class RoundAudit:
    """A round's blind audit: its sample size, how many of them a person has answered, and the estimate."""

    round: int
    sample: int
    answered: int
    estimate: AgreementEstimate


def audit_estimates(store: Store, job_id: int) -> dict[int, RoundAudit]:
    """Per round of the job that has an audit sample, its estimate from the person's blind answers so far."""
    out = {}
    for round_index, size in store.audit_rounds(job_id):
        answers = store.audit_answers(job_id, round_index)
        out[round_index] = RoundAudit(round_index, size, len(answers), audit_estimate(answers))
    return out


def audit_cells(audit: RoundAudit | None) -> list[str]:
    if audit is None:
        return ["", ""]
    e = audit.estimate
    return [interval_text(e), f"{e.n} ({e.ties}, {e.both_bad}) of {audit.sample}"]


def audit_warning(audits: dict[int, RoundAudit]) -> str:
    """A plain warning, with what to do, when the latest audited round's 95% interval includes 0.5 (no answers
    yet included); empty when the audit tells the self-judge from a coin, or when no round has an audit."""
    if not audits:
        return ""
    audit = audits[max(audits)]
    e = audit.estimate
    if not e.covers_half:
        return ""
    if e.n == 0:
        found = f"round {audit.round}'s blind audit has no decided answer yet ({audit.answered} of {audit.sample})"
    else:
        found = (
            f"in round {audit.round}'s blind audit it agreed with you on {e.agree:.2f} of {e.n} decided pairs, "
            f"95% interval {e.lo:.2f}–{e.hi:.2f}, which includes 0.5"
        )
    return (
        f"the self-judge is not yet better than a coin on your labels: {found}. Label more audit pairs (Review, "
        'order "audit sample (blind)") to narrow the interval; if it stays around 0.5, fix the judge by name '
        "(`judge.kind`), try the no-reference judge (`judge.reference: none`), or run judge-check to compare the "
        "judge variants on your seed labels before spending more rounds."
    )
