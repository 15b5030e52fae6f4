"""Run the SPA stages in this process, on a scratch database: the benchmarks' way to run many variants
without paying a fresh interpreter per stage. Same stage code as the worker runs (engine.runtime.stages)."""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from engine.config import RunConfig
from engine.runtime.context import StageContext
from engine.runtime.stages import plan, run_stage
from storage import Job, Store

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


def run_inline(cfg: RunConfig, db: Path, after_stage: AfterStage | None = None) -> InlineRun:
    store = Store(db)
    project = store.ensure_project(cfg.project, model=cfg.model)
    job_id = store.enqueue(Job(project_id=project.id, kind="run", config_yaml=cfg.to_yaml()))
    for ref in plan(cfg):
        if ref.stage == "review":
            continue
        ctx = StageContext(store, job_id, project.id, cfg, ref.round, ref.stage)
        run_stage(ctx)
        store.stage_done(job_id, ref.round, ref.stage)
        if after_stage:
            after_stage(ctx)
    store.finish_job(job_id, "done")
    return InlineRun(store, job_id, project.id)


def human_corrections(n_per_round: int, by: str, seed: int) -> AfterStage:
    """A simulated reviewer: after each judge stage, n pairs (lowest confidence first, or at random) get
    their gold label as a human label, exactly as the studio's review tab would write it."""
    rng = random.Random(seed)

    def correct(ctx: StageContext) -> None:
        if ctx.stage != "judge":
            return
        pairs = [p for p in ctx.store.pairs(ctx.job_id, ctx.round) if p.gold_a is not None and p.gold_a != p.gold_b]
        if by == "confidence":
            chosen = sorted(pairs, key=lambda p: p.confidence)[:n_per_round]
        else:
            chosen = rng.sample(pairs, min(n_per_round, len(pairs)))
        for p in chosen:
            ctx.store.set_label(p.id, "a" if p.gold_a > p.gold_b else "b", source="human", actor="benchmark")
    return correct


def with_overrides(cfg: RunConfig, **changes) -> RunConfig:
    """A copy of cfg with top-level fields or dotted nested fields ('refine.enabled') replaced."""
    nested: dict[str, dict] = {}
    top = {}
    for key, value in changes.items():
        if "__" in key:
            section, name = key.split("__", 1)
            nested.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, values in nested.items():
        top[section] = replace(getattr(cfg, section), **values)
    return replace(cfg, **top)
