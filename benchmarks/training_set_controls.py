"""The two training-set controls on the demo world: `train.keep_top_fraction` (train on the top of a round's
self-labelled pairs by margin, drop the rest) and `train.replay_labelled` (add seed pairs to every round), each
against today's behaviour on the spa_table rows the issue says must not regress: SPA as specified and SPA with the
no-reference judge and best of 8 samples. Same seeds for every setting, so differences are paired by seed.

    python benchmarks/training_set_controls.py --split validation --seeds 3       # what picks the defaults
    python benchmarks/training_set_controls.py --split eval --seeds 3 --settings off "keep top 0.5"

Every row is spa_table's own (benchmarks/spa_table.py: same stages, same config, same seeds) with the setting's
keys on top. `--auto` adds SPA with `judge.kind: auto` (a judge-check stage before the seed round). Writes
benchmarks/results/training_set_controls.md and .json (`--out`)."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.inline import with_overrides
from benchmarks.spa_table import REPO, RESULTS, SPA_NO_REF_BEST, Outcome, Variant, run_variant, variants
from engine.config import load_config

SETTINGS = {
    "off": {},
    "keep top 0.75": {"train__keep_top_fraction": 0.75},
    "keep top 0.5": {"train__keep_top_fraction": 0.5},
    "replay 0.1": {"train__replay_labelled": 0.1},
    "replay 0.25": {"train__replay_labelled": 0.25},
}
ROWS = ("SPA", SPA_NO_REF_BEST)
AUTO_ROW = "SPA, judge.kind auto"


def with_setting(v: Variant, name: str, keys: dict) -> Variant:
    return Variant(f"{v.name} | {name}", lambda c, s: {**v.changes(c, s), **keys}, v.labels, v.after_stage)


def paired(outs: list[Outcome], base: list[Outcome]) -> str:
    """Mean gold difference against the same row with the controls off, seed by seed."""
    if not base or outs is base:
        return ""
    diffs = [o.gold - b.gold for o, b in zip(outs, base)]
    se = f", se {statistics.stdev(diffs) / len(diffs) ** 0.5:.3f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.3f}{se}, {sum(d > 0 for d in diffs)}/{len(diffs)} seeds above"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def render(results: dict[str, dict[str, list[Outcome]]], args, seconds: float, world: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Demo world ({world}), {args.split} prompts, seeds {list(range(args.seeds))} (mean ± std), {when}, "
        f"{platform.processor() or platform.machine()} × {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; `{shlex.join(['python', 'benchmarks/training_set_controls.py', *sys.argv[1:]])}`, "
        f"{seconds / 60:.1f} min.",
        "",
        "| row | setting | gold score | win rate vs SFT | against off (paired by seed) | label acc. r1/r2/r3 |",
        "|---|---|---|---|---|---|",
    ]
    for row, by_setting in results.items():
        base = by_setting.get("off", [])
        for setting, outs in by_setting.items():
            accs = "/".join(
                f"{statistics.mean(o.judge_by_round[r] for o in outs):.3f}"
                for r in sorted(outs[0].judge_by_round)
                if all(r in o.judge_by_round for o in outs)
            )
            lines.append(
                f"| {row} | {setting} | {mean_std([o.gold for o in outs])} | {mean_std([o.win for o in outs])} | "
                f"{paired(outs, base)} | {accs} |"
            )
    lines += [
        "",
        "Gold score: mean gold reward of one sampled answer per held-out prompt; win rate against π_init's answer "
        "(ties half). keep top f: each round trains on the top f of its self-labelled pairs by the judge's margin. "
        "replay s: s × the round's training pairs are added as seed pairs (ỹ = 1).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    p.add_argument("--split", choices=["eval", "validation"], default="validation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--settings", nargs="*", default=list(SETTINGS), help=f"of: {', '.join(SETTINGS)}")
    p.add_argument("--rows", nargs="*", default=list(ROWS), help="spa_table row names")
    p.add_argument("--auto", action="store_true", help=f"also the row '{AUTO_ROW}' (controls off)")
    p.add_argument("--out", default=str(RESULTS / "training_set_controls.md"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", default=None, help="a .json this script wrote: its rows are taken, not run again")
    args = p.parse_args()
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    torch.set_num_threads(args.threads)
    from engine.worlds.demo_world import build_demo_world

    world = build_demo_world()
    base = with_overrides(load_config(args.config), eval_data=f"demo:{args.split}.jsonl")
    table = {v.name: v for v in variants(base)}
    missing = [r for r in args.rows if r not in table]
    if missing:
        p.error(f"unknown rows {missing}")
    plan = [(row, name, with_setting(table[row], name, SETTINGS[name])) for row in args.rows for name in args.settings]
    if args.auto:
        plan.append((AUTO_ROW, "off", with_setting(table["SPA"], "judge.kind auto", {"judge__kind": "auto"})))
    started = time.monotonic()
    done = json.loads(Path(args.resume).read_text()) if args.resume else {}
    results: dict[str, dict[str, list[Outcome]]] = {}
    for row, setting, variant in plan:
        for seed in range(args.seeds):
            taken = done.get(row, {}).get(setting, [])
            out = outcome(taken[seed]) if seed < len(taken) else run_variant(variant, base, seed)
            results.setdefault(row, {}).setdefault(setting, []).append(out)
            print(
                f"{variant.name} seed {seed}: gold {out.gold:.3f}, win {out.win:.3f}, {out.seconds:.0f}s", flush=True
            )
            Path(args.out).with_suffix(".json").write_text(as_json(results))  # a killed measurement resumes
    text = render(results, args, time.monotonic() - started, world.fingerprint())
    print(text)
    Path(args.out).write_text(text)
    return 0


def as_json(results: dict[str, dict[str, list[Outcome]]]) -> str:
    """{row: {setting: [outcome per seed, in seed order]}}."""
    return json.dumps({row: {s: [o.__dict__ for o in outs] for s, outs in by.items()} for row, by in results.items()})


def outcome(stored: dict) -> Outcome:
    """An Outcome read back from the .json (its per-round keys are strings there)."""
    rounds = ("judge_by_round", "less_likely_by_round", "gold_less_likely_by_round")
    return Outcome(**{k: ({int(r): v for r, v in x.items()} if k in rounds else x) for k, x in stored.items()})


if __name__ == "__main__":
    sys.exit(main())
