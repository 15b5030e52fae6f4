"""Tune the demo defaults on the demo world's validation split (never on the held-out eval prompts).

    python benchmarks/tune.py --grid learning_rate=2e-4,5e-4,1e-3 epochs=3,6 --seeds 1

Each grid point is a full SPA run (seed DPO + the config's rounds) with eval_data pointed at
validation.jsonl; prints gold score, win rate against SFT and self-label accuracy per round.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.inline import run_inline, with_overrides
from engine.config import load_config

REPO = Path(__file__).resolve().parents[1]


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("["):
        return json.loads(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    p.add_argument("--grid", nargs="*", default=[], help="key=v1,v2 (nested keys as section__name)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config(args.config)
    base = with_overrides(base, eval_data="demo:validation.jsonl")
    axes = [
        (k, [parse_value(v) for v in vals.split(";" if vals.startswith("[") else ",")])
        for k, vals in (g.split("=", 1) for g in args.grid)
    ]
    for point in itertools.product(*[[(k, v) for v in vals] for k, vals in axes]):
        changes = dict(point)
        rows = []
        started = time.monotonic()
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = with_overrides(base, seed=seed, output_dir=str(Path(tmp) / "out"), **changes)
                run = run_inline(cfg, Path(tmp) / "tune.db")
                rows.append(
                    {
                        "gold": run.metrics_by_round("eval/gold_score"),
                        "win": run.metrics_by_round("eval/win_rate_vs_init"),
                        "self": run.metrics_by_round("round/self_label_accuracy"),
                        "judge": run.metrics_by_round("eval/judge_accuracy"),
                    }
                )
                run.store.close()

        def fmt(key: str) -> str:
            rounds = sorted(rows[0][key])
            return " ".join(f"{statistics.mean(r[key][i] for r in rows):.3f}" for i in rounds)

        print(
            f"{changes}  gold [{fmt('gold')}]  win [{fmt('win')}]  self [{fmt('self')}]  judge [{fmt('judge')}]  "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
