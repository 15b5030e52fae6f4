"""Issue 36's comparison on the text world: SPA from the world's two-sample seed pairs against SPA from the seed the
studio's seed builder makes (best and worst of 4 answers by gold), over run seeds, read off the folders that

    python benchmarks/text_table.py --seed S --rows seed_builder spa --keep-runs DIR_S

left, one per seed:

    python benchmarks/seed_comparison.py --runs /work/runs/s36_42 /work/runs/s36_43 /work/runs/s36_44

Per seed and arm: the seed pairs, the round judges' agreement with gold on the pairs gold decides (Wilson 95%
interval), the minutes; pooled over seeds, the two arms' agreement and its difference (unpaired: the arms judge
different pairs). Then each final model against SmolLM2 and against the other arm, paired on the same prompts
(benchmarks/text_reeval.py's answers, cache and tests): the 160 held-out prompts of stacked instructions, and the
split of one or two instructions at the run's budget and at --few-budget. Pooled over seeds, the per-prompt
differences of every seed are stacked: SmolLM2's answers are the same in each seed, so those units are not
independent and the pooled interval is a little narrow.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.text_reeval import ModelRef, comparison, model_scores, run_config
from engine.method.agreement import wilson_interval
from engine.worlds import TEXT
from engine.worlds import ifeval_tasks as it
from engine.worlds.text_eval import SPLITS
from engine.worlds.text_world import TextWorld, draw_few_split
from storage import Store

REPO = Path(__file__).resolve().parents[1]
ARMS = {"spa": "two-sample seed", "seed_builder": "seed builder"}  # text_table.py row: what its seed is


@dataclass
class Arm:
    seed: int
    row: str
    db: str
    rounds: int
    seed_pairs: int
    ranked: int  # seed prompts the simulated person ranked (seed builder), or 0
    equal: int
    decided: dict[int, int] = field(default_factory=dict)  # per round: pairs whose gold differs
    right: dict[int, int] = field(default_factory=dict)  # of those, where the judge's label is gold's
    minutes: float = 0.0  # the run, plus the seed's sampling where the arm sampled one


def read_arm(folder: Path, row: str) -> Arm:
    db = folder / row / "table.db"
    store = Store(db)
    try:
        runs = [j for j in store.jobs(statuses=("done",)) if j.kind == "run"]
        if not runs:
            raise SystemExit(f"{db}: no finished run")
        job = runs[-1]
        cfg, _ = run_config(ModelRef(row, str(db), 0))
        seeds = store.seed_progress(job.project_id)
        minutes = sum(
            (
                datetime.fromisoformat(j.finished_at) - datetime.fromisoformat(j.started_at or j.created_at)
            ).total_seconds()
            for j in store.jobs(statuses=("done",))
            if j.finished_at and (j.id == job.id or j.kind != "run")
        )
        arm = Arm(
            cfg.seed,
            row,
            str(db),
            cfg.rounds,
            len(store.seed_pairs(job.project_id)),
            seeds.ranked,
            seeds.equal,
            minutes=minutes / 60,
        )
        for r in range(1, cfg.rounds + 1):
            decided = [
                p
                for p in store.pairs(job.id, r)
                if p.gold_a is not None
                and p.gold_b is not None
                and p.gold_a != p.gold_b
                and p.judge_label in ("a", "b")
            ]
            arm.decided[r] = len(decided)
            arm.right[r] = sum((p.judge_label == "a") == (p.gold_a > p.gold_b) for p in decided)
        return arm
    finally:
        store.close()


def stacked(scores: dict, name: str, key: str, seeds: list[int]) -> list[it.GoldScore]:
    """One model's scores on a split over the given run seeds, in seed order (SmolLM2's repeated per seed)."""
    if name == "SmolLM2":
        return scores[name][key] * len(seeds)
    return [x for seed in seeds for x in scores[f"{name}@{seed}"][key]]


def agreement(right: int, n: int) -> str:
    lo, hi = wilson_interval(right, n)
    return f"{right / n:.3f} [{lo:.3f}, {hi:.3f}] ({right}/{n})" if n else "—"


def proportion_difference(r1: int, n1: int, r2: int, n2: int) -> tuple[float, float, float]:
    """p1 − p2 of two independent samples, with a normal-approximation 95% interval."""
    p1, p2 = r1 / n1, r2 / n2
    half = 1.96 * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p1 - p2, p1 - p2 - half, p1 - p2 + half


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="text_table.py --keep-runs folders")
    p.add_argument(
        "--init", default=None, metavar="DB", help="a run whose starting model is SmolLM2 (default: the first spa)"
    )
    p.add_argument("--few-prompts", type=int, default=240, help="of the split of one or two instructions (0: none)")
    p.add_argument("--few-budget", type=int, default=400, help="new tokens for that split's second reading (0: none)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "spa-studio" / "reeval"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "seed_comparison.md"))
    args = p.parse_args()
    command = shlex.join(["python", "benchmarks/seed_comparison.py", *sys.argv[1:]])
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{(time.monotonic() - started) / 60:.1f} min] {text}", flush=True)

    arms = [read_arm(Path(folder), row) for folder in args.runs for row in ARMS]
    world = TextWorld.at(TEXT.root())
    tasks = {split: world.eval_tasks(split) for split in SPLITS}
    few = draw_few_split(world.manifest["seed"], args.few_prompts) if args.few_prompts else []
    budget = f"few@{args.few_budget}"
    init = ModelRef("SmolLM2", args.init or str(Path(args.runs[0]) / "spa" / "table.db"), None)
    cache = Path(args.cache)
    scores, cut = {}, {}
    for ref in [init] + [ModelRef(f"{a.row}@{a.seed}", a.db, a.rounds) for a in arms]:
        s, cut[ref.name] = model_scores(ref, tasks, few, args.few_budget, cache, log)
        s["held-out 160"] = s["eval"] + s["eval2"]
        scores[ref.name] = s
    run_budget = run_config(init)[0].generation.max_new_tokens
    splits = {"held-out 160": "held-out 160"}
    if few:
        splits[f"few@{run_budget}"] = "few"
    if few and args.few_budget:
        splits[budget] = budget

    seeds = sorted({a.seed for a in arms})
    comparisons = []
    for seed in [*seeds, "pooled"]:
        chosen = seeds if seed == "pooled" else [seed]
        for a, b in (("seed_builder", "SmolLM2"), ("spa", "SmolLM2"), ("seed_builder", "spa")):
            for label, key in splits.items():
                for level in ("prompt", "instruction"):
                    sa, sb = stacked(scores, a, key, chosen), stacked(scores, b, key, chosen)
                    c = comparison(ARMS.get(a, a), ARMS.get(b, b), label, level, sa, sb)
                    comparisons.append({"seed": seed, **c})

    lines = [
        "# Seed builder against the two-sample seed on the text world (`benchmarks/seed_comparison.py`)",
        "",
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, {platform.machine()} × "
        f"{os.cpu_count()} cores, torch {torch.__version__} × {torch.get_num_threads()} threads; `{command}`, "
        f"{(time.monotonic() - started) / 60:.1f} min (the runs' own minutes below).",
        "",
        "| run seed | seed | seed pairs | seed prompts ranked / all equal | "
        + " | ".join(f"round {r} judge agreement with gold [95%] (right/decided)" for r in (1, 2))
        + " | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in arms:
        ranked = f"{a.ranked} / {a.equal}" if a.row == "seed_builder" else "— (the world's pairs)"
        accs = [agreement(a.right.get(r, 0), a.decided.get(r, 0)) for r in (1, 2)]
        lines.append(
            f"| {a.seed} | {ARMS[a.row]} | {a.seed_pairs} | {ranked} | " + " | ".join(accs) + f" | {a.minutes:.1f} |"
        )
    lines += [
        "",
        "Pooled over seeds, round 1 (and round 2):",
        "",
        "| seed | round | agreement [95%] |",
        "|---|---|---|",
    ]
    pooled = {}
    for row in ARMS:
        for r in (1, 2):
            right = sum(a.right.get(r, 0) for a in arms if a.row == row)
            n = sum(a.decided.get(r, 0) for a in arms if a.row == row)
            pooled[row, r] = (right, n)
            lines.append(f"| {ARMS[row]} | {r} | {agreement(right, n)} |")
    for r in (1, 2):
        (r1, n1), (r2, n2) = pooled["seed_builder", r], pooled["spa", r]
        if n1 and n2:
            d, lo, hi = proportion_difference(r1, n1, r2, n2)
            lines.append(f"| seed builder − two-sample seed | {r} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] (unpaired) |")

    lines += [
        "",
        "Final models (round "
        + "/".join(sorted({str(a.rounds) for a in arms}))
        + "), prompt-level strict, and the answers cut at the budget:",
        "",
        "| "
        + " | ".join(
            ["model"]
            + [f"{label} {what}" for label in splits for what in ("prompt strict", "instr. strict")]
            + [f"{label} cut" for label in list(splits)[1:]]
        )
        + " |",
        "|---|" + "---|" * (2 * len(splits) + len(splits) - 1),
    ]
    for name, s in scores.items():
        cells = []
        for key in splits.values():
            m = it.ifeval_metrics(s[key])
            cells += [f"{m.prompt_strict:.3f}", f"{m.instruction_strict:.3f}"]
        cuts = [str(sum(cut[name][key])) for key in list(splits.values())[1:]]
        pretty = name if name == "SmolLM2" else f"{ARMS[name.split('@')[0]]}, seed {name.split('@')[1]}"
        lines.append(f"| {pretty} | " + " | ".join(cells + cuts) + " |")
    lines += [
        "",
        "Paired, strict (A − B on the same prompts or instructions; 95% interval, normal approximation; exact sign "
        "test on the units only one of the two follows). Pooled: every seed's units stacked.",
        "",
        "| run seed | A − B | split | level | n | A only | B only | difference | 95% interval | sign test p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        d = c["difference"]
        lines.append(
            f"| {c['seed']} | {c['a']} − {c['b']} | {c['split']} | {c['level']} | {d['prompts']} | {d['a_only']} | "
            f"{d['b_only']} | {d['difference']:+.3f} | [{d['low']:+.3f}, {d['high']:+.3f}] | {d['sign_test_p']:.3f} |"
        )
    lines += [
        "",
        "Seed builder: the world's first 20 seed prompts, 4 answers each from the seed-answers job (the run's "
        "sampling settings and seed), best and worst by gold, all-equal prompts giving no pair. Two-sample seed: "
        "the world's seed.jsonl (two samples of a prompt whose gold differs, prompts drawn until 20 differ). "
        "Agreement: the round's implicit judge against gold on the round's pairs whose gold differs. "
        "held-out 160: the world's eval and eval2 prompts; few@N: 240 prompts of one "
        "or two instructions on tasks no split has, greedy, at N new tokens.",
        "",
    ]
    out = Path(args.out)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(
        json.dumps({"arms": [asdict(a) for a in arms], "comparisons": comparisons}, indent=1)
    )
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
