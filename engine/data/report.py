"""The per-round table a run prints at the end (and the studio and benchmarks show)."""

from __future__ import annotations

from dataclasses import dataclass

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
    """A Markdown table, one row per round, with the gold columns of the world the run was in."""
    rows = round_rows(store, job_id)
    columns = COLUMNS + [c for c in GOLD_COLUMNS if any(c[1] in row.values for row in rows)]
    head = "| " + " | ".join(title for title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = [str(row.round)]
        for _, key in columns[1:]:
            v = row.values.get(key)
            cells.append("" if v is None else (f"{v:.0f}" if key == "round/pairs" else f"{v:.3f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
