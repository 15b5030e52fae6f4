"""How judge-check (engine.runtime.judge_check) deals the labelled pairs into folds and how long each fold trains.

The most faithful plan is `fold_count` folds of `fold_epochs` epochs: k = min(5, n // 2) folds, so every fold
holds out at least two pairs and trains on at least half of them (80% from n = 10 on), close to the seed the run's
own π_0 will see; each fold trains max(1, round(E / (k − 1))) epochs, E the config's seed epochs, so the k
trainings together make about as many pair-passes as the seed stage itself (n·E).

That plan costs about one seed round of training plus k + 1 scoring passes over the pairs: on the text world (20
pairs of 130-150 tokens, SmolLM2-135M in float32, E = 3) 5 folds of 1 epoch, about 1,300 CPU seconds, half an
hour on the shared 2-core machine at load 3. So the check has a time budget (`--minutes`, default BUDGET_MINUTES)
and `plan_folds` prices each plan from what the check measured before any training: the seconds of loading the
model and of the one scoring pass under π_init over every labelled pair (which the check needs anyway: it is
every fold's training reference and the judge's π_init). A training pair-pass (forward and backward of both
answers under π, AdamW on the LoRA weights) costs about STEP_FACTOR scorings of one pair, and each fold scores
every pair once under its π_0. The faithful plan is kept when it fits what is left of the budget; otherwise, among
the plans of 2..k folds and 1..fold_epochs epochs that fit, the one whose π_0 sees the most pair-passes
((k − 1)/k · n · epochs), then the one with more folds; when none fits, the cheapest (2 folds of 1 epoch). On the
text world with a pass of 35 s (an idle 2-core machine) that is 2 folds of 2 epochs, 5.9 min of folds predicted;
under load 6-9 (a pass of 240 s) 2 folds of 1 epoch, 21 min (benchmarks/results/judge_check.md). On the demo
world (64 pairs, a pass of 2 s) the faithful 5 folds of 3 epochs. `--folds` and `--epochs` fix either. The plan
depends on the machine's speed when the check starts: the figures of a loaded machine come from less training.

Imports nothing heavy: the studio and the worker read it."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_FOLDS = 5
BUDGET_MINUTES = 8.0  # the cross-fitting's share of judge-check's 10 minutes (start-up and the world's check aside)
# A DPO pair-pass (policy forward and backward on chosen and rejected, AdamW on the LoRA weights, TRL's set-up
# spread over the fold) against one pair's scoring (forward of both answers under no_grad). Measured on the text
# world with `python benchmarks/judge_check_costs.py configs/text_demo.yaml` (one epoch on 10 of its 20 pairs at
# load 9-10): 3.64 by the wall clock, 4.15 by CPU seconds.
STEP_FACTOR = 4.0


class NotEnoughLabels(ValueError):
    """Too few labelled pairs to cross-fit: the message says how many there are and how many are needed."""


def fold_count(n_pairs: int, folds: int | None = None) -> int:
    """k = min(MAX_FOLDS, n // 2) unless given; NotEnoughLabels when the pairs cannot fill k folds of two."""
    if n_pairs == 0:
        raise NotEnoughLabels(
            "the project has no labelled pairs: import a seed file, rank the answers sampled for its seed "
            "prompts, label pairs of its runs, or set seed_data in the configuration"
        )
    k = folds if folds is not None else min(MAX_FOLDS, n_pairs // 2)
    needed = 2 * max(k, 2)
    if n_pairs < needed:
        raise NotEnoughLabels(
            f"{n_pairs} labelled pair{'s' if n_pairs != 1 else ''}: cross-fitting {max(k, 2)} folds needs at least "
            f"{needed} (two per fold)"
        )
    return k


def fold_epochs(seed_epochs: int, folds: int) -> int:
    """Epochs per fold: the k trainings together about as long as the seed stage (see the module's docstring)."""
    return max(1, round(seed_epochs / (folds - 1)))


def fold_of(n_pairs: int, folds: int, seed: int) -> list[int]:
    """Each pair's fold: the pairs shuffled with `seed`, then dealt round-robin, so fold sizes differ by one."""
    order = list(range(n_pairs))
    random.Random(seed).shuffle(order)
    fold = [0] * n_pairs
    for position, index in enumerate(order):
        fold[index] = position % folds
    return fold


def chosen_first(n_pairs: int, seed: int) -> list[bool]:
    """Per pair, whether its chosen answer is shown as a: a seeded coin, the same for every fold."""
    rng = random.Random(f"{seed}:judge-check order")
    return [rng.random() < 0.5 for _ in range(n_pairs)]


@dataclass(frozen=True)
class MeasuredCosts:
    """What the check measured before training: seconds to load the model, and of one scoring pass (both answers)
    over all n labelled pairs."""

    load_s: float
    pass_s: float
    n_pairs: int


@dataclass(frozen=True)
class FoldPlan:
    folds: int
    epochs: int
    seconds: float  # predicted for the folds (training, scoring under π_0, loading for folds after the first)
    why: str

    def pair_passes(self, n_pairs: int) -> float:
        """Pair-passes of each fold's π_0: (k − 1)/k · n · epochs."""
        return (self.folds - 1) / self.folds * n_pairs * self.epochs


def predicted_seconds(costs: MeasuredCosts, folds: int, epochs: int) -> float:
    """The folds' seconds: each fold trains `epochs` passes over its training pairs (STEP_FACTOR pair scorings a
    pair), scores every pair once under its π_0, and every fold but the first loads the model again."""
    per_pair = costs.pass_s / costs.n_pairs
    held = [costs.n_pairs // folds + (k < costs.n_pairs % folds) for k in range(folds)]
    trained = sum(costs.n_pairs - h for h in held) * epochs
    return trained * STEP_FACTOR * per_pair + folds * costs.pass_s + (folds - 1) * costs.load_s


def plan_folds(
    costs: MeasuredCosts,
    seed_epochs: int,
    budget_s: float,
    folds: int | None = None,
    epochs: int | None = None,
) -> FoldPlan:
    """The folds and epochs to cross-fit within `budget_s` seconds of folds (what is left of the budget after the
    model's load and the π_init pass; see the module's docstring); `folds` or `epochs` given are kept as they are."""
    n = costs.n_pairs
    top = fold_count(n, folds)
    ks = [top] if folds is not None else list(range(top, 1, -1))
    plans = [
        (k, e, predicted_seconds(costs, k, e))
        for k in ks
        for e in ([epochs] if epochs is not None else range(fold_epochs(seed_epochs, k), 0, -1))
    ]
    k0, e0, s0 = plans[0]  # the most faithful: fold_count folds of fold_epochs epochs
    if s0 <= budget_s:
        return FoldPlan(k0, e0, s0, f"predicted {s0 / 60:.1f} min, within the budget")
    fits = [p for p in plans if p[2] <= budget_s]
    if not fits:
        k, e, s = min(plans, key=lambda p: p[2])
        return FoldPlan(
            k, e, s, f"the cheapest: predicted {s / 60:.1f} min, over the budget of {budget_s / 60:.1f} min"
        )
    k, e, s = max(fits, key=lambda p: ((p[0] - 1) / p[0] * p[1], p[0]))
    return FoldPlan(
        k,
        e,
        s,
        f"the most training within the budget: predicted {s / 60:.1f} min ({plan_text(k0, e0)}: {s0 / 60:.1f})",
    )


def plan_text(folds: int, epochs: int) -> str:
    return f"{folds} folds of {epochs} epoch{'s' if epochs != 1 else ''}"
