"""What judge-check's planner (engine.runtime.judge_folds) prices a plan with: a scoring pass over the labelled pairs
under π_init, one epoch of seed DPO on half of them (a 2-fold plan's fold, TRL's set-up included), and a scoring
pass under the trained π_0; the ratio of a training pair-pass to one pair's scoring is judge_folds.STEP_FACTOR.

    python benchmarks/judge_check_costs.py configs/text_demo.yaml

Prints wall and CPU seconds of each part, the load average, and the factor by both clocks. Writes nothing."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path


def timed(fn):
    wall, cpu = time.monotonic(), time.process_time()
    value = fn()
    return value, time.monotonic() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    args = p.parse_args(argv)

    import torch

    from engine.config import load_config
    from engine.method import scoring
    from engine.runtime import judge_folds
    from engine.runtime.checkpoints import load_policy
    from engine.runtime.judge_check import labelled_pairs, train_seed_policy
    from engine.worlds import resolve_path, world_of

    cfg = load_config(args.config)
    world = world_of(cfg)
    if world:
        world.setup(lambda done, total: None)
    pairs = labelled_pairs(None, None, cfg)
    prompts, chosen, rejected = [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs]
    policy, load_s, load_cpu = timed(lambda: load_policy(cfg, resolve_path(cfg.model), Path("."), None, True))

    def scoring_pass(model):
        with torch.no_grad():
            return scoring.pair_logps(model, policy.tokenizer, prompts, chosen, rejected, cfg.judge.batch_size)

    with policy.init_view() as init:
        (ref_chosen, ref_rejected), pass_s, pass_cpu = timed(lambda: scoring_pass(init))
    train = list(range(len(pairs) // 2))
    one_epoch = replace(cfg, epochs=1)
    _, train_s, train_cpu = timed(
        lambda: train_seed_policy(
            one_epoch, policy, pairs, train, ref_chosen, ref_rejected, 0, 1, lambda *a, **k: None
        )
    )
    policy.model.eval()
    _, pass0_s, pass0_cpu = timed(lambda: scoring_pass(policy.model))
    n = len(pairs)
    print(f"{n} labelled pairs of {args.config}; torch threads {torch.get_num_threads()}")
    print(f"load the model           {load_s:7.1f} s wall {load_cpu:7.1f} s CPU")
    print(f"scoring pass, π_init     {pass_s:7.1f} s wall {pass_cpu:7.1f} s CPU")
    print(f"1 epoch on {len(train):>3} pairs     {train_s:7.1f} s wall {train_cpu:7.1f} s CPU")
    print(f"scoring pass, π_0        {pass0_s:7.1f} s wall {pass0_cpu:7.1f} s CPU")
    for clock, t, s in (("wall", train_s, (pass_s + pass0_s) / 2), ("CPU", train_cpu, (pass_cpu + pass0_cpu) / 2)):
        print(f"pair-pass / one pair's scoring ({clock}): {t / len(train) / (s / n):.2f}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"judge_folds.STEP_FACTOR {judge_folds.STEP_FACTOR}; load average {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
