"""`judge.kind: auto`: the run labels its pairs with the judge variant (engine.method.judge_variants) that the
person's own labels support best, by the lower bound of its 95% interval (agreement.best_lower_bound).

- Before round 1 the run's `judge-check` stage (after prepare) estimates every variant on the project's labelled
  pairs by cross-fitting (engine.runtime.judge_check). A check stored before, by a judge-check job or another run,
  is reused when its fingerprint matches: the same set of labelled pairs and the same seed-DPO settings (model, β,
  seed, learning rate, epochs, batch, schedule, LoRA, dtype), whatever folds and epochs it was given.
- From round 2 on, once the blind audit of the earlier rounds holds MIN_AUDIT_DECIDED decided answers, each
  variant is scored on those answers instead: how the variant would have judged each audit pair in its round,
  from the numbers the round stored (π_{i-1}'s and π_init's log-probs, the lengths). Until then the check decides.
- Every variant is computed from the log-probs the judge stage computes anyway, so the choice costs no model
  pass: the stage scores the round with the implicit judge, then relabels its pairs with the chosen variant
  (labels, margins, confidences and per-answer scores; a person's labels stay). The length-regularised
  variant's α is fitted on the round's own pairs (judge_variants.fit_length_alpha: no labels enter).

The choice and its figures go to the job's log and to the round's metrics (AutoChoice.metrics: judge/auto_choice/
NAME, judge/auto_basis/BASIS, judge/auto/NAME/agree|lo|hi|n, judge/auto_length_alpha), which the round table, the
studio and the exported cards read back (choices_from_metrics). A resumed stage keeps the choice already stored.
Module level imports nothing heavy: the report and the cards read the metrics without torch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from engine.method.agreement import AgreementEstimate, best_lower_bound, interval_text
from engine.runtime import judge_check
from engine.runtime.check_fingerprint import fingerprint

if TYPE_CHECKING:
    from engine.config import RunConfig
    from engine.method.judge_variants import PairScores
    from engine.runtime.context import StageContext
    from storage import Metric, Pair, Store

KIND = "auto"
STAGE = "judge-check"  # the run's stage between prepare and seed when judge.kind is auto
MIN_AUDIT_DECIDED = 10  # decided blind audit answers before the audit, not the check, picks the judge
CHOICE, BASIS, FIGURES, ALPHA = "judge/auto_choice", "judge/auto_basis", "judge/auto", "judge/auto_length_alpha"
FIELDS = ("agree", "lo", "hi", "n")


@dataclass(frozen=True)
class AutoChoice:
    """The variant a round labels with, what chose it and every variant's figures on that basis's labels."""

    variant: str
    basis: str  # judge_check (cross-fitted on the labelled pairs) | audit (the earlier rounds' blind answers)
    figures: dict[str, AgreementEstimate] = field(default_factory=dict)
    length_alpha: float | None = None  # the length-regularised variant's α on this round's pairs

    @property
    def n(self) -> int:
        """The decided labels behind the figures."""
        return self.figures[self.variant].n if self.variant in self.figures else 0

    def describe(self) -> str:
        """One line for the job's log and the dataset card: the choice, its basis and every variant's figures."""
        where = "judge-check pairs" if self.basis == "judge_check" else "blind audit answers"
        parts = [f"{name} {interval_text(e)}" for name, e in self.figures.items()]
        alpha = f"; length α {self.length_alpha:.4g}" if self.length_alpha is not None else ""
        return f"auto judge: {self.variant} (best lower bound on {self.n} {where}: {'; '.join(parts)}{alpha})"

    def metrics(self) -> dict[str, float]:
        values = {f"{CHOICE}/{self.variant}": 1.0, f"{BASIS}/{self.basis}": float(self.n)}
        for name, e in self.figures.items():
            values |= {f"{FIGURES}/{name}/{key}": getattr(e, key) for key in FIELDS if getattr(e, key) is not None}
        if self.length_alpha is not None:
            values[ALPHA] = self.length_alpha
        return values


def estimate(agree: float | None, lo: float, hi: float, n: int) -> AgreementEstimate:
    """An AgreementEstimate from stored figures (ties and both-bad answers are not stored: 0)."""
    return AgreementEstimate(agree, lo, hi, int(n), 0, 0, lo <= 0.5 <= hi)


def choices_from_metrics(metrics: Iterable[Metric]) -> dict[int, AutoChoice]:
    """Per round, the auto choice its judge stage stored (AutoChoice.metrics); empty for a run without one."""
    by_round: dict[int, dict[str, float]] = {}
    for m in metrics:
        if m.round is not None and m.name.startswith(("judge/auto_", f"{FIGURES}/")):
            by_round.setdefault(m.round, {})[m.name] = m.value
    out = {}
    for round_index, values in sorted(by_round.items()):
        chosen = [name.removeprefix(f"{CHOICE}/") for name in values if name.startswith(f"{CHOICE}/")]
        bases = [name.removeprefix(f"{BASIS}/") for name in values if name.startswith(f"{BASIS}/")]
        if not chosen or not bases:
            continue
        names = dict.fromkeys(n.split("/")[2] for n in values if n.startswith(f"{FIGURES}/") and n.endswith("/lo"))
        figures = {
            name: estimate(
                values.get(f"{FIGURES}/{name}/agree"),
                values[f"{FIGURES}/{name}/lo"],
                values[f"{FIGURES}/{name}/hi"],
                values[f"{FIGURES}/{name}/n"],
            )
            for name in names
        }
        out[round_index] = AutoChoice(chosen[-1], bases[-1], figures, values.get(ALPHA))
    return out


# the choice -----------------------------------------------------------------------------------------------------


def decide(
    check: Mapping[str, AgreementEstimate] | None,
    audit: Mapping[str, AgreementEstimate] | None,
    min_audit: int = MIN_AUDIT_DECIDED,
) -> AutoChoice:
    """The audit's best lower bound once it has min_audit decided answers, else the check's; ValueError when
    neither has figures."""
    if audit and next(iter(audit.values())).n >= min_audit:
        return AutoChoice(best_lower_bound(audit), "audit", dict(audit))
    if check:
        return AutoChoice(best_lower_bound(check), "judge_check", dict(check))
    raise ValueError(
        "judge.kind auto: no judge-check figures to choose from (the run's judge-check stage stores them)"
    )


@dataclass(frozen=True)
class AuditedRound:
    """An earlier round as the audit sees it: the stored numbers of all its pairs (for α) and its answered audit
    pairs (indices into them) with the person's blind labels."""

    scores: PairScores
    audited: list[int]
    person_labels: list[str]  # a | b | tie | both_bad, one per audited pair


def audit_figures(rounds: Sequence[AuditedRound], beta: float) -> dict[str, AgreementEstimate] | None:
    """Every variant's agreement with the blind audit answers of the given rounds, each pair judged as the variant
    would have judged it in its round (α fitted on that round's pairs); None when no pair was answered."""
    import torch

    from engine.method.agreement import agreement
    from engine.method.judge_variants import VARIANT_NAMES, VariantParams, fit_length_alpha, variant_choices

    chosen: dict[str, list[torch.Tensor]] = {name: [] for name in VARIANT_NAMES}
    labels: list[str] = []
    for r in rounds:
        if not r.audited:
            continue
        alpha = fit_length_alpha(r.scores, beta).alpha
        choices = variant_choices(r.scores.take(r.audited), VariantParams(beta=beta, length_alpha=alpha))
        for name in VARIANT_NAMES:
            chosen[name].append(choices[name].a_preferred)
        labels += r.person_labels
    if not labels:
        return None
    return {
        name: agreement(labels, ["a" if a else "b" for a in torch.cat(parts).tolist()])
        for name, parts in chosen.items()
    }


def check_figures(result: judge_check.JudgeCheckResult) -> dict[str, AgreementEstimate]:
    return {name: estimate(e.agree, e.lo, e.hi, e.n) for name, e in result.judges.items()}


# in the run -----------------------------------------------------------------------------------------------------


def stored_check(store: Store, project_id: int, mark: float) -> tuple[int, judge_check.JudgeCheckResult] | None:
    """The project's latest stored check (a judge-check job's or a run's) with this fingerprint, and its job."""
    for job in reversed(store.jobs(project_id)):
        if any(m.value == mark for m in store.metrics(job.id, [judge_check.FINGERPRINT])):
            result = judge_check.from_metrics(store.metrics(job.id))
            if result is not None:
                return job.id, result
    return None


def stage_judge_check(ctx: StageContext) -> None:
    """The run's judge-check stage: reuse a matching stored check (its figures copied onto this run) or cross-fit
    the labelled pairs now; either way the run's job holds the figures round 1 chooses by."""
    from engine.worlds import world_of

    cfg = ctx.cfg
    world = world_of(cfg)
    if world:  # built by prepare: found in its cache, so its seed file resolves
        world.setup(lambda done, total: None)
    pairs = judge_check.labelled_pairs(ctx.store, ctx.project_id, cfg)
    found = stored_check(ctx.store, ctx.project_id, fingerprint(cfg, pairs)) if pairs else None
    if found is not None:
        job_id, result = found
        if job_id != ctx.job_id:
            ctx.store.add_metrics(judge_check.to_metrics(result, ctx.job_id))
        ctx.log(f"judge-check of job {job_id} reused: the same {len(pairs)} labelled pairs and seed-DPO settings")
    else:
        try:
            result = judge_check.check(cfg, ctx.store, ctx.project_id, None, ctx.progress, ctx.log)
        except judge_check.NotEnoughLabels as e:
            raise ValueError(
                f"judge.kind auto picks the judge by checking it on your labelled pairs: {e}; or name the judge "
                "(judge.kind: implicit)"
            ) from None
        ctx.store.add_metrics(judge_check.to_metrics(result, ctx.job_id))
    for line in result.lines():
        ctx.log(line)


def round_choice(store: Store, job_id: int, cfg: RunConfig, round_index: int) -> AutoChoice:
    """Round i's choice: the one stored already (a resumed stage), else decide on the audit answers of rounds
    1..i-1 and this run's check."""
    stored = choices_from_metrics(m for m in store.metrics(job_id) if m.round == round_index)
    if round_index in stored:
        return stored[round_index]
    check = judge_check.from_metrics(store.metrics(job_id))
    audited = [audited_round(store, job_id, r) for r in range(1, round_index)]
    return decide(check_figures(check) if check else None, audit_figures(audited, cfg.beta))


def audited_round(store: Store, job_id: int, round_index: int) -> AuditedRound:
    from engine.method.judge_variants import PairScores

    pairs = [p for p in store.pairs(job_id, round_index) if p.logp_init_a is not None]
    index = {p.id: k for k, p in enumerate(pairs)}
    answers = [a for a in store.audit_answers(job_id, round_index) if a.pair_id in index]
    return AuditedRound(
        PairScores.from_pairs(pairs), [index[a.pair_id] for a in answers], [a.person_label for a in answers]
    )


def relabel(ctx: StageContext) -> AutoChoice | None:
    """Label the round's judged pairs with the auto choice (its labels, margins, confidences and scores; a
    person's label stays), store the choice as the round's metrics and log it, on the main rank (None on the
    others). Idempotent."""
    import torch

    from engine.method.judge_variants import PairScores, VariantParams, fit_length_alpha, variant_scores
    from engine.runtime.distributed import barrier

    barrier(ctx.ranks)  # every rank has written its judgements
    if not ctx.ranks.is_main:
        return None
    pairs: list[Pair] = [p for p in ctx.store.pairs(ctx.job_id, ctx.round) if p.judge_label in ("a", "b")]
    choice = round_choice(ctx.store, ctx.job_id, ctx.cfg, ctx.round)
    if not pairs:
        return choice
    scores = PairScores.from_pairs(pairs)
    alpha = fit_length_alpha(scores, ctx.cfg.beta).alpha
    choice = replace(choice, length_alpha=alpha)
    judged = variant_scores(scores, choice.variant, VariantParams(beta=ctx.cfg.beta, length_alpha=alpha))
    confidence = torch.sigmoid(judged.choice.margin)
    updates = {}
    for k, p in enumerate(pairs):
        label = "a" if bool(judged.choice.a_preferred[k]) else "b"
        updates[p.id] = dict(
            judge_label=label,
            label=label,
            label_source="self",
            margin=float(judged.choice.margin[k]),
            confidence=float(confidence[k]),
            reward_a=float(judged.score_a[k]),
            reward_b=float(judged.score_b[k]),
        )
    ctx.store.update_pairs(updates, keep_human=True)
    ctx.metrics(choice.metrics())
    ctx.log(choice.describe())
    return choice
