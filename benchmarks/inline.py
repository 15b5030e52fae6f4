"""Run the SPA stages in this process, on a scratch database: the benchmarks' way to run many variants
without paying a fresh interpreter per stage. Same stage code as the worker runs (engine.runtime.stages)."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from engine.config import RunConfig, parse_config
from engine.runtime import checkpoints
from engine.runtime.context import StageContext
from engine.runtime.jobs import RUN
from engine.runtime.stages import GENERATE_CHUNK, plan, register, run_stage
from storage import Job, Pair, ReviewFilter, Store
from storage.records import REVIEW_ORDERS

AfterStage = Callable[[StageContext], None]


@dataclass
class InlineRun:
    store: Store
    job_id: int
    project_id: int

    def metric(self, name: str, round: int) -> float | None:
        values = [m.value for m in self.store.metrics(self.job_id, [name]) if m.round == round]
        return values[-1] if values else None

    def metrics_by_round(self, name: str) -> dict[int, float]:
        return {m.round: m.value for m in self.store.metrics(self.job_id, [name])}


@dataclass
class Fork:
    """Start a row from a finished run's π_0 instead of training it again (same seed pairs, same config up to the
    seed round), optionally with its round-1 samples of the first `sample_chunks` generate chunks (the same π_0,
    prompts and sampling seeds give the same samples). The row's round-0 evaluation is the source run's."""

    store: Store
    job_id: int
    out_dir: Path
    sample_chunks: int = 0


def run_inline(cfg: RunConfig, db: Path, after_stage: AfterStage | None = None, fork: Fork | None = None) -> InlineRun:
    store = Store(db)
    project = store.ensure_project(cfg.project, model=cfg.model)
    job_id = store.enqueue(Job(project_id=project.id, kind=RUN, config_yaml=cfg.to_yaml()))
    for ref in plan(cfg):
        if ref.stage == "review":
            continue
        ctx = StageContext(store, job_id, project.id, cfg, ref.round, ref.stage)
        if fork and ref.round == 0 and ref.stage in ("seed", "evaluate"):
            if ref.stage == "seed":
                take_seed_round(fork, ctx)
        elif fork and ref.round == 1 and ref.stage == "generate" and fork.sample_chunks:
            take_samples(fork, ctx)
            run_stage(ctx)  # samples the chunks not taken
        else:
            run_stage(ctx)
        store.stage_done(job_id, ref.round, ref.stage)
        if after_stage:
            after_stage(ctx)
    store.finish_job(job_id, "done")
    return InlineRun(store, job_id, project.id)


def take_seed_round(fork: Fork, ctx: StageContext) -> None:
    source = checkpoints.saved_weights(fork.out_dir, 0, ctx.cfg)
    target = checkpoints.saved_weights(ctx.out_dir, 0, ctx.cfg)
    shutil.copytree(source, target)
    for name in ("text_eval_init.json", "text_eval2_init.json", "eval_init_samples.json"):  # π_init's answers
        if (fork.out_dir / name).exists():
            shutil.copy2(fork.out_dir / name, ctx.out_dir / name)
    register(ctx, target, 0)


def take_samples(fork: Fork, ctx: StageContext) -> None:
    """The source run's round-1 pairs of the first chunks, as sampled (no judgement), under this run's ids."""

    def key(prompt) -> str:
        return json.dumps(prompt, sort_keys=True)

    ids = {key(e.prompt): e.id for e in ctx.store.examples(ctx.project_id, "pool")}
    source_project = fork.store.job(fork.job_id).project_id
    wanted = {
        key(e.prompt) for e in fork.store.examples(source_project, "pool")[: fork.sample_chunks * GENERATE_CHUNK]
    }
    pairs = [
        Pair(
            job_id=ctx.job_id,
            round=1,
            prompt=p.prompt,
            response_a=p.response_a,
            response_b=p.response_b,
            example_id=ids[key(p.prompt)],
            project_id=ctx.project_id,
            tokens_a=p.tokens_a,
            tokens_b=p.tokens_b,
            logp_policy_a=p.logp_policy_a,
            logp_policy_b=p.logp_policy_b,
            gold_a=p.gold_a,
            gold_b=p.gold_b,
        )
        for p in fork.store.pairs(fork.job_id, 1)
        if key(p.prompt) in wanted
    ]
    ctx.store.add_pairs(pairs)
    ctx.log(f"took {len(pairs)} round-1 pairs sampled by run {fork.job_id} from the same π_0")


def gold_answer(p: Pair) -> str:
    """What a person who knows gold answers: the answer with the higher gold reward, or a tie."""
    return "tie" if p.gold_a == p.gold_b else ("a" if p.gold_a > p.gold_b else "b")


def answer_audit(ctx: StageContext) -> int:
    """Answer the round's blind audit sample by gold, in the audit order (via="audit"), as a person would in the
    Review tab; returns how many pairs were answered."""
    answered = 0
    for pair_id in ctx.store.audit_sample_ids(ctx.job_id, ctx.round):
        p = ctx.store.pair(pair_id)
        if p.gold_a is not None and p.gold_b is not None:
            ctx.store.set_label(p.id, gold_answer(p), source="human", actor="benchmark", via="audit")
            answered += 1
    return answered


def human_corrections(n_per_round: int, by: str, seed: int, audit: bool = False) -> AfterStage:
    """A simulated reviewer: after each judge stage, the first n pairs of the review tab's order `by` ("uncertain":
    flagged, then least confident; "disagree": the two judges disagree first; "confident") or n at random get their
    gold label as a human label, exactly as the studio's review tab would write it. Only pairs whose gold differs
    count: a person's label elsewhere changes nothing. audit: first answer the round's blind audit sample by gold
    (answer_audit), so the run reports the audit's estimate beside the true accuracy; those labels come on top of
    the n (they are human labels and train), so a row that compares label budgets leaves it off."""
    if by != "random" and by not in REVIEW_ORDERS:
        raise ValueError(f"pick by one of {', '.join(REVIEW_ORDERS)} or random, not {by!r}")
    rng = random.Random(seed)

    def gold_differs(p: Pair) -> bool:
        return p.gold_a is not None and p.gold_a != p.gold_b

    def correct(ctx: StageContext) -> None:
        if ctx.stage != "judge":
            return
        if audit:
            answer_audit(ctx)
        if by == "random":
            pairs = [p for p in ctx.store.pairs(ctx.job_id, ctx.round) if gold_differs(p)]
            chosen = rng.sample(pairs, min(n_per_round, len(pairs)))
        else:
            page = ReviewFilter(ctx.project_id, job_id=ctx.job_id, round=ctx.round, order=by, limit=1_000_000)
            chosen = [p for p in ctx.store.review_page(page)[0] if gold_differs(p)][:n_per_round]
        for p in chosen:
            ctx.store.set_label(p.id, "a" if p.gold_a > p.gold_b else "b", source="human", actor="benchmark")

    return correct


def with_overrides(cfg: RunConfig, **changes) -> RunConfig:
    """A copy of cfg with top-level fields or nested ones spelt with '__' (judge__reference="none") replaced, through
    the config's own `launch.py run --set key.path=value` path: validated like a file, an error names the key."""
    items = [f"{key.replace('__', '.')}={_yaml_value(value)}" for key, value in changes.items()]
    return parse_config(cfg.to_yaml(), "with_overrides", items)


def _yaml_value(value) -> str:
    """value as one line of YAML that reads back as the same value (a string that looks like a number stays one)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()
