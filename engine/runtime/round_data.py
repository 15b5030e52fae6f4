"""What a round's stages take from storage besides the pairs themselves: the rows the train stage trains on (with
their reference log-probs, the two training-set controls train.keep_top_fraction and train.replay_labelled) and the
round's blind audit sample, drawn after judging."""

from __future__ import annotations

import math
import random

from engine.method import scoring
from engine.method.agreement import audit_sample
from engine.method.preference_data import TrainRow
from engine.runtime import checkpoints
from engine.runtime.context import StageContext
from engine.runtime.distributed import barrier
from storage import Example, Pair


def audit_seed(seed: int, round_index: int) -> int:
    """The audit sample's random seed: the run's seed and the round, so a resumed stage draws the same pairs."""
    return seed * 1_000 + round_index


def draw_audit(ctx: StageContext) -> None:
    """Store a uniform random sample of `audit_size` of the round's judged pairs (a or b) as its blind audit
    (engine.method.agreement): idempotent, a resumed stage keeps the sample already stored."""
    barrier(ctx.ranks)  # every rank has written its judgements before the sample is drawn from them
    if not ctx.cfg.audit_size or not ctx.ranks.is_main or ctx.store.audit_sample_ids(ctx.job_id, ctx.round):
        return
    judged = [p.id for p in ctx.store.pairs(ctx.job_id, ctx.round) if p.judge_label in ("a", "b")]
    sample = audit_sample(judged, ctx.cfg.audit_size, audit_seed(ctx.cfg.seed, ctx.round))
    if sample:
        ctx.store.set_audit_sample(ctx.job_id, ctx.round, sample)
        ctx.log(f"drew {len(sample)} of {len(judged)} judged pairs for the blind audit (Review: audit sample)")


def training_rows(ctx: StageContext) -> list[TrainRow]:
    """This round's labelled pairs (train.keep_top_fraction: only the top of its self-labelled ones by margin) plus
    every human-labelled pair of earlier rounds (gold, ỹ = 1) and, with train.replay_labelled, a share of the
    project's seed pairs, each with the label it trains on (Store.as_trained: where people disagree, their majority;
    a tie between them leaves the pair out). Stored π_{i-1} log-probs are the reference; rewrites, earlier rounds'
    pairs and replayed seed pairs need fresh ones."""
    this_round = ctx.store.pairs(ctx.job_id, ctx.round)
    kept = keep_top_by_margin(this_round, ctx.cfg.train.keep_top_fraction)
    earlier = ctx.store.human_pairs(ctx.project_id, before_round=ctx.round, job_id=ctx.job_id)
    rows = []
    for p in ctx.store.as_trained(kept + earlier):
        if p.label not in ("a", "b"):
            continue  # tie and both-bad carry no preference
        chosen, rejected = (p.response_a, p.response_b) if p.label == "a" else (p.response_b, p.response_a)
        ref_c, ref_r = (p.logp_policy_a, p.logp_policy_b) if p.label == "a" else (p.logp_policy_b, p.logp_policy_a)
        if p.human_response:
            chosen, ref_c, rejected, ref_r = p.human_response, None, rejected, ref_r
        if p.round != ctx.round:
            ref_c = ref_r = None
        rows.append(
            TrainRow(
                pair_id=p.id,
                prompt=p.prompt,
                chosen=chosen,
                rejected=rejected,
                ref_chosen_logp=ref_c,
                ref_rejected_logp=ref_r,
                trusted=p.label_source in ("human", "gold"),
            )
        )
    replay = replayed(ctx, round(ctx.cfg.train.replay_labelled * len(rows)))
    if len(kept) < len(this_round) or replay:
        dropped = len(this_round) - len(kept)
        ctx.log(
            f"dropped {dropped} self-labelled pairs below the top {ctx.cfg.train.keep_top_fraction:g} by margin, "
            f"replayed {len(replay)} seed pairs"
        )
        ctx.metrics({"round/dropped_by_margin": dropped, "round/replayed_seed_pairs": len(replay)})
    return rows + replay


def keep_top_by_margin(pairs: list[Pair], fraction: float) -> list[Pair]:
    """The pairs with the top `fraction` (at least one) of the self-labelled ones by the judge's margin, in their
    own order; human and gold labels always stay. Ties at the cut go to the earlier pair."""
    if fraction >= 1:
        return pairs
    own = sorted((p for p in pairs if p.label_source == "self"), key=lambda p: (-(p.margin or 0.0), p.id))
    keep = {p.id for p in own[: max(1, math.ceil(fraction * len(own)))]} if own else set()
    return [p for p in pairs if p.label_source != "self" or p.id in keep]


def replay_sample(count: int, pool_size: int, seed: int | str) -> list[int]:
    """`count` indices into a pool of `pool_size`: a seeded shuffle, taken again from its start (reshuffled) while
    more are wanted, so every seed pair is replayed as evenly as the count allows."""
    rng = random.Random(seed)
    out: list[int] = []
    while pool_size and len(out) < count:
        order = list(range(pool_size))
        rng.shuffle(order)
        out += order[: count - len(out)]
    return out


def replayed(ctx: StageContext, count: int) -> list[TrainRow]:
    """`count` of the project's seed pairs as trusted rows (ỹ = 1, never flagged), drawn with the run's seed and
    the round; their reference log-probs are computed under π_{i-1} like any earlier pair's."""
    seeds: list[Example] = ctx.store.seed_pairs(ctx.project_id) if count else []
    return [
        TrainRow(
            pair_id=None,
            prompt=seeds[k].prompt,
            chosen=seeds[k].chosen,
            rejected=seeds[k].rejected,
            ref_chosen_logp=None,
            ref_rejected_logp=None,
            trusted=True,
        )
        for k in replay_sample(count, len(seeds), f"{ctx.cfg.seed}:{ctx.round}:replay")
    ]


def fill_missing_reference(policy: checkpoints.Policy, rows: list[TrainRow], batch_size: int) -> None:
    """Reference log-probs under π_{i-1} (the policy as loaded, before any step) where none are stored."""
    missing = [r for r in rows if r.ref_chosen_logp is None or r.ref_rejected_logp is None]
    if not missing:
        return
    lc, lr = scoring.pair_logps(
        policy.model,
        policy.tokenizer,
        [r.prompt for r in missing],
        [r.chosen for r in missing],
        [r.rejected for r in missing],
        batch_size,
    )
    for r, c, j in zip(missing, lc, lr):
        r.ref_chosen_logp, r.ref_rejected_logp = c, j
