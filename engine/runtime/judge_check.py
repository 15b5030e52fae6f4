"""`python launch.py judge-check CONFIG` and the `judge-check` job (engine.runtime.jobs.JUDGE_CHECK): before a run
spends anything, how often would each judge variant (engine.method.judge_variants) agree with the person's own
labels? The labelled pairs are the project's seed pairs (uploaded and ranked in the seed builder), the config's
seed_data when it is not imported yet, and the pairs a person labelled a or b in the project's runs.

Cross-fitting, so no pair is judged by a model trained on it: the pairs are dealt into k folds (shuffled with the
config's seed); for each fold, seed DPO trains π_0 on the other folds as the seed stage does
(engine.runtime.stages.stage_seed: from π_init, the config's learning rate, batch and LoRA), then the held-out
fold's chosen and rejected answers are scored under that π_0 and π_init, and every variant judges them. A variant
agrees when it prefers the chosen answer. Each pair is shown as (a, b) in a seeded random order, as a round's
sampled pairs come: a tie goes to 'a' (judges.judge_preference), and so is right half the time, not always (an
ensemble whose voters tie would otherwise look perfect). The length-regularised variant's α is fitted on the fold's
training pairs only. Each variant's agreement over all folds comes with Wilson's 95% interval
(engine.method.agreement); the chosen variant is the one with the best lower bound (ties: the first in
VARIANT_NAMES).

How many folds and epochs: engine.runtime.judge_folds. The faithful plan (k = min(5, n // 2) folds of
max(1, round(E / (k − 1))) epochs) when it fits a time budget (`--minutes`, default 8), priced from the model's
load and the one scoring pass under π_init over every pair, which is measured before any fold trains; else the
plan of fewer folds or epochs that gives each fold's π_0 the most training within it. π_init's log-probs of every
pair are computed once, as the training reference of every fold and the judge's π_init; nothing is evaluated
inside a fold. `--folds` and `--epochs` fix either (`--epochs` at the config's own E: the judge the run will use).

Module level imports nothing heavy: the worker and the studio read the request type and the stage names."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.runtime.check_fingerprint import fingerprint
from engine.runtime.judge_folds import (  # noqa: F401  (the command's folds and its refusal, read from here too)
    BUDGET_MINUTES,
    MAX_FOLDS,
    FoldPlan,
    MeasuredCosts,
    NotEnoughLabels,
    chosen_first,
    fold_count,
    fold_epochs,
    fold_of,
    plan_folds,
    plan_text,
)

if TYPE_CHECKING:
    from engine.config import RunConfig
    from engine.method.judge_variants import PairScores, VariantChoice
    from storage import Metric, Store
    from storage.records import Messages

Progress = Callable[..., None]  # (done, total, force=False): the runtime's JobProgress, which raises Stopped
Say = Callable[[str], None]

STAGES = ("cross-fit",)
METRIC = "judge_check"  # metrics judge_check/<variant>/agree|lo|hi|n, judge_check/minutes and .../fingerprint
FINGERPRINT = f"{METRIC}/fingerprint"
FIELDS = ("agree", "lo", "hi", "n")


@dataclass
class JudgeCheckRequest:
    """What a `judge-check` job checks (stored as YAML of these fields in the job's config_yaml)."""

    project: str
    config: str = ""  # the name of one of the project's saved configurations, or YAML; empty: its latest
    folds: int | None = None  # None: judge_folds.plan_folds picks
    epochs: int | None = None  # per fold; None: judge_folds.plan_folds picks
    minutes: float = BUDGET_MINUTES  # the cross-fitting's time budget

    def __post_init__(self) -> None:
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"folds must be at least 2, not {self.folds}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if not self.minutes > 0:
            raise ValueError(f"minutes must be more than 0, not {self.minutes}")


@dataclass(frozen=True)
class LabelledPair:
    prompt: Messages
    chosen: str
    rejected: str
    source: str  # seed (uploaded or in seed_data), human (ranked in the seed builder, or labelled in a run)


@dataclass(frozen=True)
class JudgeEstimate:
    agree: float
    lo: float  # Wilson 95% interval
    hi: float
    n: int


@dataclass
class FoldResult:
    held: list[int]  # indices of the labelled pairs judged in this fold
    scores: PairScores  # their four log-probs and token counts, in the order shown (chosen_first)
    chosen_first: list[bool]  # per held-out pair: the chosen answer was shown as a
    length_alpha: float  # fitted on the fold's training pairs
    choices: dict[str, VariantChoice]


@dataclass
class JudgeCheckResult:
    judges: dict[str, JudgeEstimate]
    chosen: str
    minutes: float
    folds: list[FoldResult] = field(default_factory=list)
    plan: FoldPlan | None = None  # the folds and epochs cross_fit used (None: read back from metrics)
    fingerprint: float | None = None  # of the labelled pairs and the run's settings (check_fingerprint.fingerprint)

    def as_json(self) -> dict:
        """The `--json` answer: {"judges": {NAME: {"agree", "lo", "hi", "n"}}, "chosen": NAME, "minutes": m}."""
        return {
            "judges": {k: asdict(v) for k, v in self.judges.items()},
            "chosen": self.chosen,
            "minutes": self.minutes,
        }

    def lines(self) -> list[str]:
        out = [f"{'judge':<20} {'agree':>6}  {'95% interval':<16} {'n':>4}"]
        for name, e in self.judges.items():
            out.append(f"{name:<20} {e.agree:>6.3f}  [{e.lo:.3f}, {e.hi:.3f}]   {e.n:>4}")
        coin = " (its interval includes 0.5: the labels cannot tell it from a coin)" if self.covers_half() else ""
        out.append(f"chosen: {self.chosen} (the best lower bound){coin}")
        return out

    def covers_half(self) -> bool:
        best = self.judges[self.chosen]
        return best.lo <= 0.5 <= best.hi


# labelled pairs ------------------------------------------------------------------------------------------------


def labelled_pairs(store: Store | None, project_id: int | None, cfg: RunConfig) -> list[LabelledPair]:
    """The person's labelled pairs, each once: the project's seed pairs, the config's seed_data pairs not imported
    yet, and run pairs a person labelled a or b. Pairs whose two answers are the same are left out."""
    from engine.data.importers import load_examples
    from engine.worlds import resolve_path

    found: list[LabelledPair] = []
    if store is not None and project_id is not None:
        found += [
            LabelledPair(e.prompt, e.chosen, e.rejected, e.label_source or "seed")
            for e in store.seed_pairs(project_id)
        ]
    if cfg.seed_data:
        examples = load_examples(resolve_path(cfg.seed_data), "seed").examples
        found += [LabelledPair(e.prompt, e.chosen, e.rejected, "seed") for e in examples if e.chosen is not None]
    if store is not None and project_id is not None:
        for p in store.as_trained(store.human_pairs(project_id)):
            if p.label in ("a", "b"):
                chosen, rejected = (p.response_a, p.response_b) if p.label == "a" else (p.response_b, p.response_a)
                found.append(LabelledPair(p.prompt, chosen, rejected, "human"))
    seen, unique = set(), []
    for pair in found:
        key = (json.dumps(pair.prompt, sort_keys=True), pair.chosen, pair.rejected)
        if pair.chosen != pair.rejected and key not in seen:
            seen.add(key)
            unique.append(pair)
    return unique


# figures -------------------------------------------------------------------------------------------------------


def shown_scores(
    chosen: tuple[list, list, list], rejected: tuple[list, list, list], indices: list[int], shown: list[bool]
) -> PairScores:
    """PairScores of the pairs at `indices` from (logp under π_0, logp under π_init, tokens) of their chosen and
    rejected answers, each pair's chosen answer as a where `shown` says so, else as b."""
    from engine.method.judge_variants import PairScores

    def side(first: bool) -> list[list]:
        return [[(c if shown[i] == first else r)[i] for i in indices] for c, r in zip(chosen, rejected)]

    (policy_a, init_a, tokens_a), (policy_b, init_b, tokens_b) = side(True), side(False)
    return PairScores.of(policy_a, policy_b, init_a, init_b, tokens_a, tokens_b)


def held_out_choices(held: PairScores, train: PairScores, beta: float) -> tuple[float, dict[str, VariantChoice]]:
    """Every variant's choice on the held-out pairs, the length-regularised α fitted on the training pairs."""
    from engine.method.judge_variants import VariantParams, fit_length_alpha, variant_choices

    alpha = fit_length_alpha(train, beta).alpha
    return alpha, variant_choices(held, VariantParams(beta=beta, length_alpha=alpha))


def estimates(folds: list[FoldResult]) -> dict[str, JudgeEstimate]:
    """Each variant's agreement with the labels over all folds, with Wilson's 95% interval."""
    import torch

    from engine.method.agreement import variant_agreement
    from engine.method.judge_variants import VARIANT_NAMES, VariantChoice

    pooled = {
        name: VariantChoice(
            torch.cat([f.choices[name].a_preferred for f in folds]), torch.cat([f.choices[name].margin for f in folds])
        )
        for name in VARIANT_NAMES
    }
    labels = ["a" if first else "b" for f in folds for first in f.chosen_first]
    return {name: JudgeEstimate(e.agree, e.lo, e.hi, e.n) for name, e in variant_agreement(pooled, labels).items()}


def choose(judges: dict[str, JudgeEstimate]) -> str:
    """The variant with the best lower bound; on a tie the first of them (VARIANT_NAMES order)."""
    from engine.method.agreement import best_lower_bound

    return best_lower_bound(judges)


def to_metrics(result: JudgeCheckResult, job_id: int) -> list[Metric]:
    from storage import Metric

    values = {f"{METRIC}/{name}/{key}": getattr(e, key) for name, e in result.judges.items() for key in FIELDS}
    values[f"{METRIC}/minutes"] = result.minutes
    if result.fingerprint is not None:
        values[FINGERPRINT] = result.fingerprint
    return [Metric(job_id=job_id, name=k, value=float(v), round=0, stage=STAGES[0]) for k, v in values.items()]


def from_metrics(metrics: list[Metric]) -> JudgeCheckResult | None:
    """The result a judge-check job stored (to_metrics), its variants in the order stored; None when it stored none.
    Imports no torch: the studio reads it."""
    values = {m.name: m.value for m in metrics if m.name.startswith(f"{METRIC}/")}
    names = dict.fromkeys(name.split("/")[1] for name in values if name.endswith("/agree"))
    judges = {
        name: JudgeEstimate(
            *(values[f"{METRIC}/{name}/{key}"] for key in FIELDS[:3]), int(values[f"{METRIC}/{name}/n"])
        )
        for name in names
    }
    if not judges:
        return None
    return JudgeCheckResult(
        judges, choose(judges), values.get(f"{METRIC}/minutes", 0.0), fingerprint=values.get(FINGERPRINT)
    )


# cross-fitting -------------------------------------------------------------------------------------------------


def cross_fit(
    cfg: RunConfig,
    pairs: list[LabelledPair],
    folds: int | None,
    progress: Progress = lambda *a, **k: None,
    say: Say = lambda message: None,
    budget_s: float | None = None,
    epochs: int | None = None,
) -> JudgeCheckResult:
    """Seed DPO on k − 1 folds, judge the k-th, for every fold (see the module's docstring). Without `budget_s`:
    `folds` folds of cfg.epochs epochs; with it, judge_folds.plan_folds picks them after the π_init pass
    (`folds` and `epochs` given are kept)."""
    from dataclasses import replace

    import torch

    from engine.method import scoring
    from engine.runtime.checkpoints import load_policy
    from engine.worlds import resolve_path

    started = time.monotonic()
    model_path = resolve_path(cfg.model)
    prompts = [p.prompt for p in pairs]
    chosen, rejected = [p.chosen for p in pairs], [p.rejected for p in pairs]
    policy = load_policy(cfg, model_path, Path("."), None, trainable=True)
    loaded = time.monotonic()
    # π_init's log-probs, once: every fold's training reference and the held-out judge's π_init
    with policy.init_view() as init:
        init_chosen, init_rejected = scoring.pair_logps(
            init, policy.tokenizer, prompts, chosen, rejected, cfg.judge.batch_size
        )
    costs = MeasuredCosts(loaded - started, time.monotonic() - loaded, len(pairs))
    if budget_s is None:
        plan = FoldPlan(fold_count(len(pairs), folds), cfg.epochs, 0.0, "as given")
    else:
        plan = plan_folds(costs, cfg.epochs, budget_s - costs.load_s - costs.pass_s, folds, epochs)
    say(
        f"{plan_text(plan.folds, plan.epochs)} ({plan.why}; measured: "
        f"loading {costs.load_s:.0f} s, a scoring pass over the {len(pairs)} pairs {costs.pass_s:.0f} s)"
    )
    cfg = replace(cfg, epochs=plan.epochs)
    tokens_chosen = scoring.response_token_counts(policy.tokenizer, chosen)
    tokens_rejected = scoring.response_token_counts(policy.tokenizer, rejected)
    fold = fold_of(len(pairs), plan.folds, cfg.seed)
    shown = chosen_first(len(pairs), cfg.seed)
    results: list[FoldResult] = []
    progress(0, plan.folds * 100, force=True)
    for k in range(plan.folds):
        fold_started = time.monotonic()
        train = [i for i in range(len(pairs)) if fold[i] != k]
        held = [i for i in range(len(pairs)) if fold[i] == k]
        if policy is None:
            policy = load_policy(cfg, model_path, Path("."), None, trainable=True)
        # seed DPO on the other folds
        train_seed_policy(cfg, policy, pairs, train, init_chosen, init_rejected, k, plan.folds, progress)
        # score both sides of every pair under the fold's π_0, then judge the held-out ones
        policy.model.eval()
        with torch.no_grad():
            policy_chosen, policy_rejected = scoring.pair_logps(
                policy.model, policy.tokenizer, prompts, chosen, rejected, cfg.judge.batch_size
            )

        def scores_of(indices: list[int]) -> PairScores:
            sides = ((policy_chosen, init_chosen, tokens_chosen), (policy_rejected, init_rejected, tokens_rejected))
            return shown_scores(*sides, indices, shown)

        alpha, choices = held_out_choices(scores_of(held), scores_of(train), cfg.beta)
        results.append(FoldResult(held, scores_of(held), [shown[i] for i in held], alpha, choices))
        policy = None
        say(
            f"fold {k + 1}/{plan.folds}: seed DPO on {len(train)} pairs, judged {len(held)} "
            f"({time.monotonic() - fold_started:.0f} s)"
        )
        progress((k + 1) * 100, plan.folds * 100, force=True)
    judges = estimates(results)
    return JudgeCheckResult(judges, choose(judges), round((time.monotonic() - started) / 60, 2), results, plan)


def train_seed_policy(
    cfg: RunConfig,
    policy,
    pairs: list[LabelledPair],
    train: list[int],
    ref_chosen: list[float],
    ref_rejected: list[float],
    fold: int,
    folds: int,
    progress: Progress,
) -> None:
    """π_0 = plain sigmoid DPO of π_init on the training pairs, as the seed stage trains it (engine.runtime.stages.
    stage_seed); progress in hundredths of a fold, and a stop asked for ends training and raises Stopped."""
    from transformers import TrainerCallback

    from engine.method.preference_data import TrainRow
    from engine.method.trainer import TrainSettings, train_dpo
    from engine.runtime.context import Stopped

    class FoldProgress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            try:
                progress(fold * 100 + int(100 * state.global_step / max(state.max_steps, 1)), folds * 100)
            except Stopped:
                control.should_training_stop = True
            return control

    rows = [
        TrainRow(
            pair_id=None,
            prompt=pairs[i].prompt,
            chosen=pairs[i].chosen,
            rejected=pairs[i].rejected,
            ref_chosen_logp=ref_chosen[i],
            ref_rejected_logp=ref_rejected[i],
            trusted=True,
        )
        for i in train
    ]
    result = train_dpo(
        policy.model,
        policy.tokenizer,
        rows,
        TrainSettings.for_round(cfg, 0),
        None,
        reference="adapters_disabled" if cfg.lora.enabled else "model",
        ref_model=policy.init_model,
        callbacks=[FoldProgress()],
    )
    if result.stopped:
        raise Stopped()


def check(
    cfg: RunConfig,
    store: Store | None,
    project_id: int | None,
    folds: int | None,
    progress: Progress,
    say: Say,
    epochs: int | None = None,
    minutes: float = BUDGET_MINUTES,
) -> JudgeCheckResult:
    """Set up the config's world, gather the labelled pairs, refuse too few (NotEnoughLabels) and cross-fit within
    `minutes` (judge_folds.plan_folds; `folds` and `epochs` given are kept)."""
    from engine.worlds import world_of

    if epochs is not None and epochs < 1:
        raise NotEnoughLabels(f"judge-check trains π_0 on the labelled pairs: epochs must be at least 1, not {epochs}")
    if not minutes > 0:
        raise NotEnoughLabels(f"judge-check's time budget must be more than 0 minutes, not {minutes}")
    if not cfg.seed_data:  # refuse before a world is built
        fold_count(len(labelled_pairs(store, project_id, cfg)), folds)
    world = world_of(cfg)
    if world:
        world.setup(lambda done, total: None)
    pairs = labelled_pairs(store, project_id, cfg)
    fold_count(len(pairs), folds)
    by_source = {s: sum(p.source == s for p in pairs) for s in ("seed", "human")}
    say(
        f"{len(pairs)} labelled pairs ({by_source['seed']} seed, {by_source['human']} labelled by a person), "
        f"seed DPO at lr {cfg.learning_rate:g} per fold, within {minutes:g} minutes"
    )
    result = cross_fit(cfg, pairs, folds, progress, say, minutes * 60, epochs)
    result.fingerprint = fingerprint(cfg, pairs)
    return result


# the command line and the job --------------------------------------------------------------------------------


def main(args) -> int:
    """`launch.py judge-check CONFIG [--db PATH] [--project NAME] [--folds K] [--epochs E] [--minutes M] [--json]`:
    reads the database, never writes it (a missing database file is not created)."""
    from engine.config import ConfigError, load_config
    from storage import Store

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"judge-check: invalid configuration: {e}", file=sys.stderr)
        return 2
    if getattr(args, "project", None):
        cfg.project = args.project
    db = Path(getattr(args, "db", None) or cfg.db or "spa_studio.db")
    store = Store(db) if db.is_file() else None
    project = store.project(cfg.project) if store is not None else None
    as_json = getattr(args, "json", False)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if as_json else (lambda m: print(m, flush=True))
    say(f"judge-check of project '{cfg.project}' ({db if project else 'not in ' + str(db) + ': seed_data only'})")
    try:
        result = check(
            cfg,
            store,
            project.id if project else None,
            getattr(args, "folds", None),
            lambda *a, **k: None,
            say,
            getattr(args, "epochs", None),
            getattr(args, "minutes", None) or BUDGET_MINUTES,
        )
    except NotEnoughLabels as e:
        print(f"judge-check: {e}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    if as_json:
        print(json.dumps(result.as_json()))
    else:
        print("\n".join(result.lines()))
    say(cost_line(result.minutes))
    return 0


def cost_line(minutes: float) -> str:
    """The check's wall time beside the process's CPU seconds and the machine's load: on a shared machine the wall
    time alone says little."""
    import os
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"({minutes:.2f} minutes; {usage.ru_utime + usage.ru_stime:.0f} CPU seconds in all; load average {load})"


def run_judge_check(store: Store, job, req: JudgeCheckRequest, progress: Progress, say: Say) -> JudgeCheckResult:
    """The one stage (`cross-fit`): the check on the project's configuration, its figures stored as the job's
    metrics (to_metrics; read back with from_metrics)."""
    from engine.runtime.seed_answers import project_config

    project = store.project(req.project)
    if project is None or project.id != job.project_id:
        raise ValueError(f"job {job.id} belongs to no project named {req.project!r}")
    cfg = project_config(store, project, req.config)
    result = check(cfg, store, project.id, req.folds, progress, say, req.epochs, req.minutes)
    store.add_metrics(to_metrics(result, job.id))
    say("\n".join(result.lines()))
    return result
