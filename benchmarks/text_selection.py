"""Where should a small human budget go? On a finished run (the text world, or the demo world: any run whose pairs
carry gold rewards), each selection rule picks k pairs per round for a person to label; a pick helps only where the
judge's label was wrong, so the figure is the number of wrong self-labels a rule puts in front of the person, against
random picks (their expectation, k × the round's error rate, computed exactly).

    python launch.py run configs/text_demo.yaml --db runs/text_demo.db
    python benchmarks/text_selection.py runs/text_demo.db

Rules (all read off what the judge stage stores, so the studio can apply them before training):
- lowest confidence: σ(margin) ascending, the studio's default "least sure" review order;
- judges disagree: the implicit judge (against π_init) and the no-reference judge (β·logp under π_{i-1}) prefer
  different answers, lowest confidence first;
- highest confidence: the opposite order, a control;
- longer answer chosen: pairs where the judge chose the longer answer (in tokens), shortest margin first;
- flagged noisy: de-coupled noise detection's flags (these come from training, after the review point), then the
  rest by confidence.
Writes benchmarks/results/text_selection.md.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from storage import Pair, Store

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def judged(p: Pair) -> bool:
    return p.judge_label in ("a", "b") and p.gold_a is not None and p.gold_b is not None and p.gold_a != p.gold_b


def wrong(p: Pair) -> bool:
    """The judge's label disagrees with gold (only pairs whose gold differs are counted)."""
    return (p.judge_label == "a") != (p.gold_a > p.gold_b)


def noref_label(p: Pair) -> str | None:
    if p.logp_policy_a is None or p.logp_policy_b is None:
        return None
    return "a" if p.logp_policy_a >= p.logp_policy_b else "b"


def chose_longer(p: Pair) -> bool:
    ta, tb = p.tokens_a or 0, p.tokens_b or 0
    return ta != tb and (p.judge_label == "a") == (ta > tb)


Rule = Callable[[list[Pair]], list[Pair]]


def by_confidence(pairs: list[Pair]) -> list[Pair]:
    return sorted(pairs, key=lambda p: (p.confidence, p.id))


RULES: dict[str, Rule] = {
    "lowest confidence": by_confidence,
    "judges disagree": lambda ps: (
        by_confidence([p for p in ps if noref_label(p) not in (None, p.judge_label)])
        + by_confidence([p for p in ps if noref_label(p) in (None, p.judge_label)])
    ),
    "highest confidence": lambda ps: sorted(ps, key=lambda p: (-p.confidence, p.id)),
    "longer answer chosen": lambda ps: (
        by_confidence([p for p in ps if chose_longer(p)]) + by_confidence([p for p in ps if not chose_longer(p)])
    ),
    "flagged noisy": lambda ps: (
        by_confidence([p for p in ps if p.noisy or p.warmup_flag])
        + by_confidence([p for p in ps if not (p.noisy or p.warmup_flag)])
    ),
}


@dataclass
class RoundFigures:
    round: int
    pairs: int  # judged pairs whose gold differs
    errors: int
    noref_errors: int
    budgets: list[int]  # k, pairs picked
    found: dict[str, list[int]]  # rule → wrong labels among its first k picks, per budget
    random_expected: list[float]
    random_draw: list[int]


def round_figures(pairs: list[Pair], budgets: list[int], seed: int) -> RoundFigures:
    errors = sum(wrong(p) for p in pairs)
    noref = sum(1 for p in pairs if noref_label(p) is not None and (noref_label(p) == "a") != (p.gold_a > p.gold_b))
    found = {name: [sum(wrong(p) for p in rule(pairs)[:k]) for k in budgets] for name, rule in RULES.items()}
    rng = random.Random(seed)
    return RoundFigures(
        pairs[0].round,
        len(pairs),
        errors,
        noref,
        budgets,
        found,
        [k * errors / len(pairs) for k in budgets],
        [sum(wrong(p) for p in rng.sample(pairs, k)) for k in budgets],
    )


def render(db: str, job_id: int, figures: list[RoundFigures], budgets_pct: list[float]) -> str:
    lines = [
        f"Human-budget selection on `{db}` (run {job_id}); `python benchmarks/text_selection.py {db}`.",
        "",
        "Wrong self-labels among the k pairs each rule puts first (only pairs whose gold rewards differ count; "
        "a person labelling them fixes exactly these).",
        "",
    ]
    for f in figures:
        lines += [
            f"Round {f.round}: {f.pairs} pairs, judge wrong on {f.errors} ({f.errors / f.pairs:.1%}); "
            f"the no-reference judge would be wrong on {f.noref_errors} ({f.noref_errors / f.pairs:.1%}).",
            "",
            "| rule | "
            + " | ".join(
                f"k = {k} ({p:g}%{'' if k <= p / 100 * f.pairs + 0.5 else ', at least 1'})"
                for k, p in zip(f.budgets, budgets_pct)
            )
            + " |",
            "|---|" + "---|" * len(f.budgets),
        ]
        lines.append("| random (expected) | " + " | ".join(f"{e:.1f}" for e in f.random_expected) + " |")
        lines.append("| random (one draw) | " + " | ".join(map(str, f.random_draw)) + " |")
        for name, row in f.found.items():
            lines.append(f"| {name} | " + " | ".join(map(str, row)) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db")
    p.add_argument("--job", type=int, default=None, help="run job id (default: the last finished run)")
    p.add_argument("--budgets", type=float, nargs="*", default=[1, 5, 10, 25], help="per cent of a round's pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "text_selection.md"))
    args = p.parse_args()
    store = Store(args.db)
    jobs = [
        j for j in store.jobs() if j.kind == "run" and (args.job == j.id or args.job is None and j.status == "done")
    ]
    job = jobs[-1] if jobs else None
    if job is None:
        raise SystemExit(f"{args.db}: no such run")
    figures = []
    for r in sorted({p.round for p in store.pairs(job.id)}):
        pairs = [p for p in store.pairs(job.id, r) if judged(p)]
        if pairs:
            budgets = [max(1, round(pct / 100 * len(pairs))) for pct in args.budgets]
            figures.append(round_figures(pairs, budgets, args.seed + r))
    text = render(args.db, job.id, figures, args.budgets)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
