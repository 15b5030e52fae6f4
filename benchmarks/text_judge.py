"""Does the self-judge see the text world's gold? DESIGN §4b's judge anchor, reproduced: seed DPO on 20
gold-labelled best-vs-worst pairs, then every judge on the other best-vs-worst pairs of the same prompts.

    python benchmarks/text_table.py --rows anchor --eval-prompts 48 --keep-runs runs/table
    python benchmarks/text_judge.py runs/table/anchor/table.db [--spa-from runs/text_demo.db]

The pairs are round 1 of the last run in DB (the anchor row: 4 samples of SmolLM2 per prompt, gold picks
best and worst); only pairs whose gold differs count. --spa-from also judges them with that run's π_0, the seed
round of the world's own 20 seed pairs (two samples each), to tell the seed pairs' part from the judged pairs'.
Ties count as half right. Writes benchmarks/results/text_judge.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.inline import run_inline, with_overrides
from engine.config import RunConfig, load_config, parse_config
from engine.method import models, scoring
from engine.method.judges import implicit_reward
from engine.runtime import checkpoints
from engine.runtime.run_folder import run_dir
from engine.runtime.stages import paths
from storage import Pair, Store

REPO = Path(__file__).resolve().parents[1]
SEED_PAIRS = 20
ANCHOR = (
    "DESIGN §4b anchor, 20 seed pairs and 65 judged: implicit 66%, π_init's likelihood 63%, no reference 63%, "
    "the shorter answer 48%"
)


@dataclass
class GoldPair:
    prompt: list
    chosen: str
    rejected: str


@dataclass
class Scores:
    """Summed log-probs of each pair's chosen and rejected answer under one model."""

    chosen: torch.Tensor
    rejected: torch.Tensor


def gold_pairs(db: str) -> list[GoldPair]:
    """Round 1's judged pairs of the last run in db whose gold differs, chosen = the higher gold (the run may still
    be training on them)."""
    store = Store(db)
    jobs = [j for j in store.jobs() if j.kind == "run"]
    if not jobs:
        raise SystemExit(f"{db}: no run")
    pairs: list[Pair] = store.pairs(jobs[-1].id, 1)
    store.close()
    out = [
        GoldPair(p.prompt, *((p.response_a, p.response_b) if p.gold_a > p.gold_b else (p.response_b, p.response_a)))
        for p in pairs
        if p.gold_a is not None and p.gold_a != p.gold_b
    ]
    if len(out) <= SEED_PAIRS:
        raise SystemExit(f"{db}: {len(out)} pairs whose gold differs; need more than {SEED_PAIRS}")
    return out


def seed_round(cfg: RunConfig, seeds: list[GoldPair], tmp: Path) -> Path:
    """π_0 = DPO on the seed pairs from π_init, by the run's own seed stage; returns its output folder."""
    seed_file = tmp / "seed.jsonl"
    seed_file.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": p.prompt,
                    "chosen": [{"role": "assistant", "content": p.chosen}],
                    "rejected": [{"role": "assistant", "content": p.rejected}],
                }
            )
            + "\n"
            for p in seeds
        )
    )
    cfg = with_overrides(cfg, seed_data=str(seed_file), rounds=0, output_dir=str(tmp / "out"), eval__max_prompts=2)
    run_inline(cfg, tmp / "seed.db").store.close()
    return tmp / "out"


def score(model, tokenizer, pairs: list[GoldPair], batch_size: int) -> Scores:
    c, r = scoring.pair_logps(
        model, tokenizer, [p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs], batch_size
    )
    return Scores(torch.as_tensor(c, dtype=torch.float64), torch.as_tensor(r, dtype=torch.float64))


def policy_scores(cfg: RunConfig, out_dir: Path, pairs: list[GoldPair]) -> tuple[Scores, Scores]:
    """(π_0, π_init) log-probs of every pair."""
    policy = checkpoints.load_policy(cfg, paths(cfg)["model"], out_dir, 0)
    with torch.no_grad():
        pi0 = score(policy.model, policy.tokenizer, pairs, cfg.judge.batch_size)
        with policy.init_view() as init:
            pi_init = score(init, policy.tokenizer, pairs, cfg.judge.batch_size)
    return pi0, pi_init


def right(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """The share of pairs where the gold-chosen answer scores higher; a tie is half right."""
    return float(((chosen > rejected).double() + 0.5 * (chosen == rejected).double()).mean())


def judge_rows(name: str, pi0: Scores, pi_init: Scores, beta: float, lengths: Scores) -> list[tuple[str, float]]:
    r_c, r_r = implicit_reward(pi0.chosen, pi_init.chosen, beta), implicit_reward(pi0.rejected, pi_init.rejected, beta)
    return [
        (f"implicit, β·[logp(π_0) − logp(π_init)] ({name})", right(r_c, r_r)),
        (f"implicit per token ({name})", right(r_c / lengths.chosen, r_r / lengths.rejected)),
        (f"no reference, β·logp(π_0) ({name})", right(pi0.chosen, pi0.rejected)),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", help="a finished run whose round 1 holds gold best-vs-worst pairs (text_table.py's anchor)")
    p.add_argument("--config", default=str(REPO / "configs" / "text_demo.yaml"))
    p.add_argument("--spa-from", metavar="DB", help="also judge with the π_0 of this finished `launch.py run`")
    p.add_argument("--seed", type=int, default=42, help="which pairs are the seed")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "text_judge.md"))
    args = p.parse_args()
    started = time.monotonic()
    cfg = load_config(args.config)
    pairs = gold_pairs(args.db)
    random.Random(args.seed).shuffle(pairs)
    seeds, judged = pairs[:SEED_PAIRS], pairs[SEED_PAIRS:]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = seed_round(cfg, seeds, Path(tmp))
        pi0, pi_init = policy_scores(cfg, out_dir, judged)
    tokenizer = models.load_tokenizer(paths(cfg)["model"], cfg.trust_remote_code)
    lengths = Scores(
        *(
            torch.tensor(scoring.response_token_counts(tokenizer, texts), dtype=torch.float64)
            for texts in ([p.chosen for p in judged], [p.rejected for p in judged])
        )
    )
    rows = judge_rows(f"π_0 on {SEED_PAIRS} of these pairs", pi0, pi_init, cfg.beta, lengths)
    if args.spa_from:
        store = Store(args.spa_from)
        job = [j for j in store.jobs(statuses=("done",)) if j.kind == "run"][-1]
        spa_cfg = parse_config(job.config_yaml, f"{args.spa_from} job {job.id}")
        spa_pi0, _ = policy_scores(spa_cfg, run_dir(spa_cfg, store.path, job.id), judged)
        store.close()
        rows += judge_rows("π_0 of the world's seed pairs", spa_pi0, pi_init, cfg.beta, lengths)
    rows += [
        ("π_init's likelihood, logp(π_init)", right(pi_init.chosen, pi_init.rejected)),
        ("π_init's likelihood per token", right(pi_init.chosen / lengths.chosen, pi_init.rejected / lengths.rejected)),
        ("the shorter answer", right(-lengths.chosen, -lengths.rejected)),
    ]
    command = shlex.join(["python", "benchmarks/text_judge.py", *sys.argv[1:]])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "\n".join(
            [
                f"Judges against gold on {len(judged)} best-vs-worst pairs of the text world (the seed round trained "
                "on "
                f"{SEED_PAIRS} others of the same kind, {cfg.epochs} epochs at lr {cfg.learning_rate:g}); {when}; "
                f"`{command}`, {(time.monotonic() - started) / 60:.1f} min.",
                "",
                "| judge | agrees with gold |",
                "|---|---|",
                *(f"| {name} | {acc:.3f} |" for name, acc in rows),
                "",
                f"One pair is {1 / len(judged):.3f}; "
                f"one standard error near 0.6 is about {(0.24 / len(judged)) ** 0.5:.3f}. "
                f"{ANCHOR}.",
            ]
        )
        + "\n"
    )
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
