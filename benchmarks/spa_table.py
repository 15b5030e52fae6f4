"""The paper's table in miniature, on the embedded demo world: does SPA with 3.3% of the labels reach DPO
trained on all of them?

    python benchmarks/spa_table.py                 # 3 seeds, held-out eval prompts (15-27 min on 2 CPU cores)
    python benchmarks/spa_table.py --split validation --seeds 1   # what tuning looks at
    python benchmarks/spa_table.py --seeds 12 --out benchmarks/results/headline_12_seeds.md --only \
        "DPO on 100% gold labels, offline, lr" "DPO on 100% gold labels, on-policy, round lr" \
        "SPA, judge without reference, best of"          # the headline's closest rows on 12 seeds (10-19 min)

Every row runs the real stages (engine.runtime.stages) in this process from configs/demo.yaml, changing only
what the row is about; the seed varies sampling, LoRA initialisation and data order. A second block reruns
the full-label rows, the oracle and SPA with the learning rates tuned on validation for the reference-free
judge (each DPO-on-100% row at its own best), so the headline is read against DPO at its best too; a third
block draws 8 samples per prompt and keeps the best and worst by the row's judge (SPA's own, or gold for
DPO on 100%). Writes benchmarks/results/spa_table.md and .json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from benchmarks.inline import AfterStage, InlineRun, human_corrections, run_inline, with_overrides
from engine.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


@dataclass
class Variant:
    name: str
    changes: Callable[[RunConfig, Path], dict]  # (base config, scratch folder) -> overrides
    labels: Callable[[InlineRun, RunConfig], int]  # human/gold labels the row consumed
    after_stage: Callable[[int], AfterStage | None] = lambda seed: None
    rounds_shown: bool = True


def seed_labels(run: InlineRun, cfg: RunConfig) -> int:
    return run.store.count_examples(run.project_id, "seed")


def seed_plus_gold_pairs(run: InlineRun, cfg: RunConfig) -> int:
    return seed_labels(run, cfg) + sum(len(run.store.pairs(run.job_id, r)) for r in range(1, cfg.rounds + 1))


def seed_plus_gold_scores(run: InlineRun, cfg: RunConfig) -> int:
    """Best-of-N by gold reads the gold reward of every sample, not one label per pair."""
    pairs = sum(len(run.store.pairs(run.job_id, r)) for r in range(1, cfg.rounds + 1))
    return seed_labels(run, cfg) + cfg.generation.samples_per_prompt * pairs


def seed_plus_human(run: InlineRun, cfg: RunConfig) -> int:
    return seed_labels(run, cfg) + run.store.label_source_counts(run.project_id).get("human", 0)


def reward_model_on_seed(cfg: RunConfig, scratch: Path) -> dict:
    """The PairRM-style baseline: a one-logit reward model on the SFT backbone, trained on the seed pairs only."""
    from engine.data.importers import load_examples
    from engine.method.models import load_tokenizer
    from engine.runtime.judge_eval import train_demo_reward_model
    from engine.worlds.demo_world import DemoWorld, default_demo_dir

    world = DemoWorld.at(default_demo_dir())
    tokenizer = load_tokenizer(str(world.model_dir))
    seeds = load_examples(world.seed_file, "seed").examples
    model = train_demo_reward_model(world, tokenizer, cfg.seed, pairs=seeds)
    out = scratch / "reward_model"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"judge__kind": "reward_model", "judge__reward_model": str(out), "refine__enabled": False}


def human_budget(cfg: RunConfig) -> int:
    """1% of the pool, spread evenly over the rounds."""
    from engine.worlds.demo_world import DemoWorld, default_demo_dir

    pool = DemoWorld.at(default_demo_dir()).manifest["counts"]["pool"]
    return max(1, round(0.01 * pool / cfg.rounds))


ON_POLICY_100 = "DPO on 100% gold labels, on-policy (π_0's pairs of SPA's prompts, one pass)"
OFFLINE_100 = "DPO on 100% gold labels, offline (seed-style pairs of the whole pool, 1 epoch)"
# The second block: round learning rate and offline DPO's learning rate chosen on the validation split
# (benchmarks/tune.py) for the reference-free judge and for each DPO-on-100% row at its own best.
ROUND_LR, ROUND_LR_TEXT = 1e-3, "1e-3"
OFFLINE_LR, OFFLINE_LR_TEXT = 5e-4, "5e-4"
OFFLINE_100_TUNED = f"DPO on 100% gold labels, offline, lr {OFFLINE_LR_TEXT}"
ON_POLICY_100_TUNED = f"DPO on 100% gold labels, on-policy, round lr {ROUND_LR_TEXT}"
# Another CPU builds another demo world from the same seed (DemoWorld.fingerprint); on the second one
# (world B) validation chose 5e-4 for on-policy DPO, so that row runs too and DPO is compared at either best.
ON_POLICY_LR_B, ON_POLICY_LR_B_TEXT = 5e-4, "5e-4"
ON_POLICY_100_TUNED_B = f"DPO on 100% gold labels, on-policy, round lr {ON_POLICY_LR_B_TEXT}"
SPA_NO_REF = f"SPA, judge without reference (authors' ablation), round lr {ROUND_LR_TEXT}"
# The third block: the "samples" lever, tuned on validation. N samples per prompt, and the judge keeps its
# highest- and lowest-rewarded one as the pair (engine.method.judges.spread_pair); DPO on 100% gets the same
# selection by gold, so the gain that selection alone brings is visible beside SPA's.
BEST_OF, BEST_OF_LR, BEST_OF_LR_TEXT = 8, 5e-4, "5e-4"
GOLD_BEST_OF_LR, GOLD_BEST_OF_LR_TEXT = 3e-4, "3e-4"
SPA_NO_REF_BEST = f"SPA, judge without reference, best of {BEST_OF} samples, round lr {BEST_OF_LR_TEXT}"
ON_POLICY_100_BEST = (
    f"DPO on 100% gold labels, on-policy, best of {BEST_OF} samples by gold, round lr {GOLD_BEST_OF_LR_TEXT}"
)
FULL_LABEL_ROWS = (
    OFFLINE_100,
    ON_POLICY_100,
    OFFLINE_100_TUNED,
    ON_POLICY_100_TUNED,
    ON_POLICY_100_TUNED_B,
    ON_POLICY_100_BEST,
)


def spa_no_ref_human(base: RunConfig) -> str:
    return f"{SPA_NO_REF} + {human_budget(base) * base.rounds} human labels, lowest confidence"


def variants(base: RunConfig) -> list[Variant]:
    all_prompts = sum(base.prompts_for_round(i) for i in range(1, base.rounds + 1))
    per_round = human_budget(base)
    on_policy = {"rounds": 1, "prompts_per_round": [all_prompts], "judge__kind": "gold", "refine__enabled": False}
    offline = {"rounds": 0, "seed_data": "demo:all_pairs.jsonl", "epochs": 1}
    hot = {"round_learning_rate": ROUND_LR}
    no_ref = {**hot, "judge__reference": "none"}
    humans = per_round * base.rounds
    best_of = {"generation__samples_per_prompt": BEST_OF}
    return [
        Variant("SFT (π_init)", lambda c, s: {"rounds": 0}, lambda r, c: 0, rounds_shown=False),
        Variant("DPO on the 3.3% seed", lambda c, s: {"rounds": 0}, seed_labels, rounds_shown=False),
        # The paper's DPO row: the whole labelled set of which the seed is 3.3%, trained from π_init like the
        # seed; one epoch is 63 steps of 32, under SPA's 84 (24 seed + 60 round steps).
        Variant(OFFLINE_100, lambda c, s: offline, seed_labels, rounds_shown=False),
        Variant(ON_POLICY_100, lambda c, s: on_policy, seed_plus_gold_pairs),
        Variant(
            "Iterative DPO, gold judge (oracle)",
            lambda c, s: {"judge__kind": "gold", "refine__enabled": False},
            seed_plus_gold_pairs,
        ),
        Variant("Iterative DPO, reward model trained on the seed", reward_model_on_seed, seed_labels),
        Variant(
            "Iterative DPO, LLM-as-judge (SFT model, both orders)",
            lambda c, s: {"judge__kind": "llm_judge", "refine__enabled": False},
            seed_labels,
        ),
        Variant("SPA without noise detection", lambda c, s: {"refine__enabled": False}, seed_labels),
        Variant("SPA", lambda c, s: {}, seed_labels),
        Variant(
            f"SPA + {humans} human labels, lowest confidence",
            lambda c, s: {},
            seed_plus_human,
            lambda seed: human_corrections(per_round, "uncertain", seed),
        ),
        Variant(
            f"SPA + {humans} human labels, at random",
            lambda c, s: {},
            seed_plus_human,
            lambda seed: human_corrections(per_round, "random", seed),
        ),
        Variant(
            OFFLINE_100_TUNED, lambda c, s: {**offline, "learning_rate": OFFLINE_LR}, seed_labels, rounds_shown=False
        ),
        Variant(ON_POLICY_100_TUNED, lambda c, s: {**on_policy, **hot}, seed_plus_gold_pairs),
        Variant(
            ON_POLICY_100_TUNED_B,
            lambda c, s: {**on_policy, "round_learning_rate": ON_POLICY_LR_B},
            seed_plus_gold_pairs,
        ),
        Variant(
            f"Iterative DPO, gold judge (oracle), round lr {ROUND_LR_TEXT}",
            lambda c, s: {"judge__kind": "gold", "refine__enabled": False, **hot},
            seed_plus_gold_pairs,
        ),
        Variant(f"SPA, round lr {ROUND_LR_TEXT}", lambda c, s: hot, seed_labels),
        Variant(SPA_NO_REF, lambda c, s: no_ref, seed_labels),
        Variant(
            spa_no_ref_human(base),
            lambda c, s: no_ref,
            seed_plus_human,
            lambda seed: human_corrections(per_round, "uncertain", seed),
        ),
        Variant(
            ON_POLICY_100_BEST,
            lambda c, s: {**on_policy, **best_of, "round_learning_rate": GOLD_BEST_OF_LR},
            seed_plus_gold_scores,
        ),
        Variant(SPA_NO_REF_BEST, lambda c, s: {**no_ref, **best_of, "round_learning_rate": BEST_OF_LR}, seed_labels),
    ]


@dataclass
class Outcome:
    gold: float
    win: float
    judge_by_round: dict[int, float] = field(default_factory=dict)
    less_likely_by_round: dict[int, float] = field(default_factory=dict)  # judge chose π_init's less likely answer
    gold_less_likely_by_round: dict[int, float] = field(default_factory=dict)  # gold did
    labels: int = 0
    seconds: float = 0.0


def run_variant(v: Variant, base: RunConfig, seed: int) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        cfg = with_overrides(base, seed=seed, output_dir=str(scratch / "out"))
        cfg = with_overrides(cfg, **v.changes(cfg, scratch))
        run = run_inline(cfg, scratch / "table.db", v.after_stage(seed))
        last = cfg.rounds
        if v.name.startswith("SFT"):
            gold, win = run.metric("eval/init_gold_score", 0), 0.5
        else:
            gold, win = run.metric("eval/gold_score", last), run.metric("eval/win_rate_vs_init", last)

        def by_round(name: str) -> dict[int, float]:
            return run.metrics_by_round(name) if v.rounds_shown else {}

        out = Outcome(
            gold=gold,
            win=win,
            judge_by_round=by_round("round/self_label_accuracy"),
            less_likely_by_round=by_round("round/chose_less_likely"),
            gold_less_likely_by_round=by_round("round/gold_prefers_less_likely"),
            labels=v.labels(run, cfg),
            seconds=time.monotonic() - started,
        )
        run.store.close()
    return out


def round_mean(outs: list[Outcome], attr: str, r: int) -> str:
    vals = [getattr(o, attr)[r] for o in outs if r in getattr(o, attr)]
    return f"{statistics.mean(vals):.3f}" if vals else ""


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def labels_used(outs: list[Outcome]) -> str:
    """On-policy rows label every pair whose gold differs, so the count moves a little with the seed."""
    counts = sorted({o.labels for o in outs})
    return "/".join(map(str, counts)) if len(counts) <= 3 else f"{counts[0]}–{counts[-1]}"


def verdict(rows: dict[str, list[Outcome]], spa_row: str) -> str:
    """Reached or not against each DPO-on-100% row, with the difference of the means and its standard error
    over seeds (√(s²/n + s²/n)), so a gap smaller than the seed spread reads as one; rows run on the same seeds
    are also compared seed by seed (the paired standard error, smaller when seeds move both rows alike)."""
    spa = [o.gold for o in rows[spa_row]]
    labels = labels_used(rows[spa_row])
    parts = []
    for name in FULL_LABEL_ROWS:
        if name in rows:
            full = [o.gold for o in rows[name]]
            delta = statistics.mean(spa) - statistics.mean(full)
            spread = ""
            if len(spa) > 1 and len(full) > 1:
                se = (statistics.variance(spa) / len(spa) + statistics.variance(full) / len(full)) ** 0.5
                spread = f", standard error {se:.3f}"
            if len(spa) == len(full) > 1:  # same seeds: the eval sampling draws alike, so its luck is common to both
                diffs = [a - b for a, b in zip(spa, full)]
                spread += (
                    f"; paired by seed: {sum(d > 0 for d in diffs)}/{len(diffs)} seeds above, "
                    f"standard error {statistics.stdev(diffs) / len(diffs) ** 0.5:.3f}"
                )
            parts.append(
                f'{"reached" if delta >= 0 else "NOT reached"} against "{name}" '
                f"({statistics.mean(spa):.3f} vs {statistics.mean(full):.3f}: Δ {delta:+.3f}{spread})"
            )
    return f"{spa_row} ({labels} labels): " + "; ".join(parts)


def render(rows: dict[str, list[Outcome]], args, base: RunConfig, seconds: float, world: str) -> str:
    rounds = list(range(1, base.rounds + 1))
    head = (
        "| method | labels used | gold score | win rate vs SFT | "
        + " | ".join(f"label acc. r{r}" for r in rounds)
        + " | chose π_init's less likely, r1/r2/r3 |"
    )
    lines = [head, "|" + "---|" * (5 + len(rounds))]
    for name, outs in rows.items():
        accs = [round_mean(outs, "judge_by_round", r) for r in rounds]
        less = "/".join(round_mean(outs, "less_likely_by_round", r) for r in rounds).strip("/")
        lines.append(
            f"| {name} | {labels_used(outs)} | {mean_std([o.gold for o in outs])} | "
            f"{mean_std([o.win for o in outs])} | " + " | ".join(accs) + f" | {less} |"
        )
    gold_less = [v for o in rows.get("SPA", []) for v in o.gold_less_likely_by_round.values()]
    verdicts = [
        verdict(rows, spa) for spa in ("SPA", SPA_NO_REF, spa_no_ref_human(base), SPA_NO_REF_BEST) if spa in rows
    ]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "\n".join(
            [
                f"Demo world ({world}), {args.split} prompts, seeds {list(range(args.seeds))} (mean ± std), {when}, "
                f"{platform.processor() or platform.machine()} × {torch.get_num_threads()} threads, "
                f"torch {torch.__version__}; "
                f"`{shlex.join(['python', 'benchmarks/spa_table.py', *sys.argv[1:]])}`, {seconds / 60:.1f} min.",
                "",
                *lines,
                "",
                "Headline (SPA's mean gold score with the 3.3% seed, or a few more human labels, at or above DPO on "
                "100% "
                "gold labels):",
                *[f"- {v}" for v in verdicts],
                "",
                "Gold score: mean gold reward of one sampled answer per held-out prompt (1 = exact, unhedged). "
                "Win rate: against π_init's answer to the same prompt by gold reward (ties count half). "
                "Label acc.: the round's judge labels against gold, on pairs whose gold differs. "
                "Chose π_init's less likely: share of the round's pairs where the judge chose the answer π_init gives "
                "the "
                "lower log-prob (needs no gold; the studio shows it per round)"
                + (
                    f"; on SPA's pairs gold prefers that answer {statistics.mean(gold_less):.3f} of the time."
                    if gold_less
                    else "."
                ),
            ]
        )
        + "\n"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    p.add_argument("--split", choices=["eval", "validation"], default="eval")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--only", nargs="*", default=None, help="rows whose name starts with one of these")
    p.add_argument("--out", default=str(RESULTS / "spa_table.md"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from engine.worlds.demo_world import build_demo_world, fully_labelled_pairs

    world = build_demo_world()
    fully_labelled_pairs(world)
    base = with_overrides(load_config(args.config), eval_data=f"demo:{args.split}.jsonl")
    started = time.monotonic()
    rows: dict[str, list[Outcome]] = {}
    for v in variants(base):
        if args.only and not any(v.name.startswith(o) for o in args.only):
            continue
        for seed in range(args.seeds):
            out = run_variant(v, base, seed)
            rows.setdefault(v.name, []).append(out)
            print(
                f"{v.name} seed {seed}: gold {out.gold:.3f}, win {out.win:.3f}, label acc "
                f"{[round(x, 3) for x in out.judge_by_round.values()]}, {out.seconds:.0f}s",
                flush=True,
            )
    if not {"SPA", SPA_NO_REF, SPA_NO_REF_BEST} & set(rows) or not set(FULL_LABEL_ROWS) & set(rows):
        return 0
    text = render(rows, args, base, time.monotonic() - started, world.fingerprint())
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({name: [o.__dict__ for o in outs] for name, outs in rows.items()}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
