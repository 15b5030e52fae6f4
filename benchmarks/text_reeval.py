"""Saved models of finished text-world runs, evaluated again on every held-out prompt the world has (100 eval and
60 eval2 by default, where a run evaluates 48 and 24), with paired comparisons: is SPA's gap to DPO-100% more than
the noise of a few dozen prompts?

    python benchmarks/text_reeval.py --model "SmolLM2=runs/bf16.db:init" --model "SPA=runs/bf16.db:2" \\
        --model "DPO-100%=runs/table_bf16/dpo100/table.db:1" --compare SPA:DPO-100% \\
        --out benchmarks/results/text_reeval_bf16.md

A model is NAME=DB:ROUND: the last finished run in DB (a `launch.py run` database, or a row's table.db that
text_table.py --keep-runs left) and the round whose saved model to load (0: π_0, the seed round; init: the model
the run started from). Decoding is the run's evaluation (greedy, its max_new_tokens, batch size and dtype), so the
first 48 / 24 prompts repeat the run's own figures up to batching. Answers are kept in --cache, one file per model,
so a stopped re-evaluation goes on where it stopped.

Beside them, the held-out split of one or two instructions a prompt (engine.worlds.text_world.draw_few_split, 240
prompts on tasks no run sees), answered twice: at the run's max_new_tokens and at --few-budget (400), where every
answer fits, so brevity alone cannot pass; the table counts the answers cut at each budget.

A comparison A:B reports, per split and pooled, the difference in prompt-level strict accuracy (A − B) on the same
prompts, a 95% interval from the per-prompt differences (normal approximation), and the exact two-sided sign test
on the prompts where exactly one of the two follows every instruction; and the same at instruction level (each
instruction strict, paired by instruction; instructions of one prompt are not independent, so that interval is a
little narrow).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import gc
import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from engine.config import RunConfig, parse_config
from engine.method.evaluation import EvalSettings
from engine.runtime import checkpoints
from engine.runtime.run_folder import run_dir
from engine.runtime.stages import paths
from engine.worlds import TEXT
from engine.worlds import ifeval_tasks as it
from engine.worlds.text_eval import SPLITS, greedy_answers, win_rate
from engine.worlds.text_world import TextWorld, draw_few_split
from storage import Store

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class ModelRef:
    name: str
    db: str
    round: int | None  # None: the run's starting model

    @classmethod
    def parse(cls, text: str) -> "ModelRef":
        name, sep, where = text.partition("=")
        db, sep2, round_text = where.rpartition(":")
        if not (sep and sep2 and name and db):
            raise SystemExit(f"--model {text!r}: expected NAME=DB:ROUND (ROUND a number, or init)")
        if round_text != "init" and not round_text.isdigit():
            raise SystemExit(f"--model {text!r}: ROUND must be a number or init, not {round_text!r}")
        return cls(name, db, None if round_text == "init" else int(round_text))


@dataclass
class PairedDifference:
    """A − B in the share of prompts where every instruction is followed, on the same prompts."""

    prompts: int
    a_only: int  # prompts A follows fully and B does not
    b_only: int
    difference: float
    low: float  # 95% interval, normal approximation on the per-prompt differences
    high: float
    sign_test_p: float  # exact two-sided, on the a_only + b_only discordant prompts


def sign_test_p(a_only: int, b_only: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven if either side is as likely."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(a: list[bool], b: list[bool]) -> PairedDifference:
    if len(a) != len(b) or not a:
        raise ValueError("a paired comparison needs the same, non-empty set of prompts on both sides")
    diffs = [int(x) - int(y) for x, y in zip(a, b)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    half = 1.96 * math.sqrt(var / n)
    a_only, b_only = diffs.count(1), diffs.count(-1)
    return PairedDifference(n, a_only, b_only, mean, mean - half, mean + half, sign_test_p(a_only, b_only))


def split_metrics(scores: list[it.GoldScore], baseline: list[it.GoldScore] | None) -> dict[str, float]:
    values = asdict(it.ifeval_metrics(scores))
    if baseline is not None:
        values["win_rate_vs_init"] = win_rate(scores, baseline)
    return values


def run_config(ref: ModelRef) -> tuple[RunConfig, Path]:
    store = Store(ref.db)
    try:
        jobs = [j for j in store.jobs(statuses=("done",)) if j.kind == "run"]
        if not jobs:
            raise SystemExit(f"{ref.db}: no finished run")
        job = jobs[-1]
        cfg = parse_config(job.config_yaml, f"{ref.db} job {job.id}")
        return cfg, run_dir(cfg, ref.db, job.id)
    finally:
        store.close()


@dataclass
class Answers:
    texts: dict[str, list[str]]
    cut: dict[str, list[bool]]  # per answer: stopped at the token budget, not at its end


def answers(
    ref: ModelRef, tasks: dict[str, list[it.Task]], cache: Path, log, max_new_tokens: int | None = None
) -> Answers:
    """The model's greedy answers per split (at the run's max_new_tokens unless given), generated once and kept in
    cache."""
    cfg, out_dir = run_config(ref)
    budget = max_new_tokens or cfg.generation.max_new_tokens
    key = {
        "db": str(Path(ref.db).resolve()),
        "round": ref.round,
        "max_new_tokens": budget,
        "prompts": {split: [t.prompt for t in ts] for split, ts in tasks.items()},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{digest}.json"
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("key") == key:
            log(f"{ref.name}: answers at {budget} new tokens from {path}")
            return Answers(kept["texts"], kept["cut"])
    started = time.monotonic()
    policy = checkpoints.load_policy(cfg, paths(cfg)["model"], out_dir, ref.round, need_init=False)
    s = EvalSettings(
        beta=cfg.beta,
        max_prompts=0,
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=budget,
        batch_size=cfg.generation.batch_size,
        seed=cfg.seed + 7,
    )
    samples = {split: greedy_answers(policy, ts, s) for split, ts in tasks.items()}
    del policy
    gc.collect()
    out = Answers(
        {split: [x.text for x in xs] for split, xs in samples.items()},
        {split: [not x.finished for x in xs] for split, xs in samples.items()},
    )
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "name": ref.name, "texts": out.texts, "cut": out.cut}))
    n = sum(map(len, out.texts.values()))
    log(f"{ref.name}: {n} answers at {budget} new tokens in {(time.monotonic() - started) / 60:.1f} min")
    return out


def model_scores(
    ref: ModelRef, tasks: dict[str, list[it.Task]], few: list[it.Task], few_budget: int, cache: Path, log
) -> tuple[dict[str, list[it.GoldScore]], dict[str, list[bool]]]:
    """Gold scores and cut flags per split: tasks' splits and "few" at the run's budget, f"few@{few_budget}" at that
    budget (the few keys only when few is not empty; the second reading only when few_budget is not 0)."""
    got = answers(ref, {**tasks, **({"few": few} if few else {})}, cache, log)
    texts, cut = got.texts, got.cut
    if few and few_budget:
        longer = answers(ref, {"few": few}, cache, log, few_budget)
        texts[f"few@{few_budget}"], cut[f"few@{few_budget}"] = longer.texts["few"], longer.cut["few"]
    scores = {split: [it.score(t, x) for t, x in zip(tasks[split], texts[split])] for split in tasks}
    scores.update({k: [it.score(t, x) for t, x in zip(few, texts[k])] for k in texts if k.startswith("few")})
    return scores, cut


def comparison(a: str, b: str, split: str, level: str, sa: list[it.GoldScore], sb: list[it.GoldScore]) -> dict:
    """A − B on the same prompts: prompt level (every instruction followed) or instruction level (each one)."""
    if level == "prompt":
        d = paired_difference([all(x.strict) for x in sa], [all(x.strict) for x in sb])
    else:
        d = paired_difference([y for x in sa for y in x.strict], [y for x in sb for y in x.strict])
    return {"a": a, "b": b, "split": split, "level": level, "difference": asdict(d)}


def render(table: dict, command: str, seconds: float) -> str:
    sizes = table["sizes"]
    head = (
        f"Text world (SmolLM2-135M-Instruct, IFEval gold): saved models re-evaluated on {sizes['eval']} eval / "
        f"{sizes['eval2']} eval2 prompts (greedy; a run evaluates the first {table['run_sizes']['eval']} / "
        f"{table['run_sizes']['eval2']}), {table['when']}, torch {torch.__version__} × "
        f"{torch.get_num_threads()} threads; `{command}`, {seconds / 60:.1f} min.\n\n"
    )
    lines = [
        "| model | eval prompt strict | eval instr. strict | eval instr. loose | win vs SmolLM2 | "
        f"first {table['run_sizes']['eval']} eval prompt strict | eval2 prompt strict | eval2 instr. loose | "
        "pooled prompt strict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in table["models"]:
        e, e2 = m["eval"], m["eval2"]
        win = f"{e['win_rate_vs_init']:.3f}" if "win_rate_vs_init" in e else ""
        lines.append(
            f"| {m['name']} | {e['prompt_strict']:.3f} | {e['instruction_strict']:.3f} | "
            f"{e['instruction_loose']:.3f} | {win} | {m['eval_first']['prompt_strict']:.3f} | "
            f"{e2['prompt_strict']:.3f} | {e2['instruction_loose']:.3f} | {m['pooled_prompt_strict']:.3f} |"
        )
    out = [head, "\n".join(lines), ""]
    if table.get("few"):
        few = table["few"]
        labels = (few["run_budget"], few["budget"]) if few["budget"] else (few["run_budget"],)
        out += [
            "",
            f"The held-out split of one or two instructions ({few['prompts']} prompts, {few['instructions']} "
            f"instructions, tasks no run sees), at the run's budget ({few['run_budget']})"
            + (
                f" and at a budget the answers should fit ({few['budget']}; the cut columns say whether they did):"
                if few["budget"]
                else " only (--few-budget 0; the cut column counts the answers the budget stopped):"
            ),
            "",
            "| model | "
            + " | ".join(
                f"{label} prompt strict | {label} instr. strict | {label} instr. loose | {label} cut"
                for label in labels
            )
            + " |",
            "|---|" + "---|" * (4 * len(labels)),
        ]
        for m in table["models"]:
            cells = []
            for split in ("few", "few_budget")[: len(labels)]:
                v = m[split]
                cells += [f"{v['prompt_strict']:.3f}", f"{v['instruction_strict']:.3f}"]
                cells += [f"{v['instruction_loose']:.3f}", str(v["cut"])]
            out.append(f"| {m['name']} | " + " | ".join(cells) + " |")
        out.append("")
    if table["comparisons"]:
        out += [
            "",
            "Paired, strict (A − B on the same prompts; prompt level: every instruction followed, instruction "
            "level: each instruction; 95% interval; exact sign test on the prompts or instructions only one of the "
            "two follows):",
            "",
            "| A − B | split | level | n | A only | B only | difference | 95% interval | sign test p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in table["comparisons"]:
            d = c["difference"]
            out.append(
                f"| {c['a']} − {c['b']} | {c['split']} | {c.get('level', 'prompt')} | {d['prompts']} | "
                f"{d['a_only']} | {d['b_only']} | "
                f"{d['difference']:+.3f} | [{d['low']:+.3f}, {d['high']:+.3f}] | {d['sign_test_p']:.3f} |"
            )
        out.append("")
    out.append(
        "\neval: held-out tasks; eval2: held-out tasks with held-out instruction types; pooled: both; few: one or "
        "two instructions, tasks of topics no other split has; few@N: the same at N new tokens; cut: answers that "
        "reached the token budget before their end. Win vs "
        "SmolLM2: gold reward of the greedy answer against the `init` model's on the same prompt (ties count "
        "half), where one is listed."
    )
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DB:ROUND")
    p.add_argument("--compare", action="append", default=[], metavar="A:B", help="names given to --model")
    p.add_argument("--eval-prompts", type=int, default=None, help="default: every eval prompt of the world")
    p.add_argument("--eval2-prompts", type=int, default=None, help="default: every eval2 prompt of the world")
    p.add_argument("--run-eval-prompts", type=int, default=48, help="the runs' own eval size, for the first-N column")
    p.add_argument("--few-prompts", type=int, default=240, help="of the split of one or two instructions (0: none)")
    p.add_argument("--few-budget", type=int, default=400, help="new tokens for that split's second reading (0: none)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "spa-studio" / "reeval"))
    p.add_argument("--out", default=str(RESULTS / "text_reeval.md"))
    args = p.parse_args()
    refs = [ModelRef.parse(m) for m in args.model]
    names = {r.name for r in refs}
    pairs = [tuple(c.split(":", 1)) for c in args.compare]
    for pair in pairs:
        if len(pair) != 2 or not set(pair) <= names:
            raise SystemExit(f"--compare {':'.join(pair)}: expected A:B, both names given to --model")
    command = shlex.join(["python", "benchmarks/text_reeval.py", *sys.argv[1:]])
    started = time.monotonic()

    world = TextWorld.at(TEXT.root())
    limits = {"eval": args.eval_prompts, "eval2": args.eval2_prompts}
    tasks = {split: world.eval_tasks(split)[: limits[split]] for split in SPLITS}
    few = draw_few_split(world.manifest["seed"], args.few_prompts) if args.few_prompts else []
    budget_key = f"few@{args.few_budget}"
    readings = (("few", "few"), ("few_budget", budget_key))[: 2 if args.few_budget else 1] if few else ()

    def log(text: str) -> None:
        print(f"[{(time.monotonic() - started) / 60:.1f} min] {text}", flush=True)

    scores: dict[str, dict[str, list[it.GoldScore]]] = {}
    cut: dict[str, dict[str, list[bool]]] = {}
    for ref in refs:
        scores[ref.name], cut[ref.name] = model_scores(ref, tasks, few, args.few_budget, Path(args.cache), log)
    init = next((r.name for r in refs if r.round is None), None)
    first = {"eval": args.run_eval_prompts, "eval2": max(1, args.run_eval_prompts // 2)}
    models = []
    for ref in refs:
        s = scores[ref.name]
        base = scores[init] if init is not None else {split: None for split in SPLITS}
        pooled = s["eval"] + s["eval2"]
        models.append(
            {
                "name": ref.name,
                "db": ref.db,
                "round": ref.round,
                **{split: split_metrics(s[split], base[split]) for split in SPLITS},
                "eval_first": split_metrics(s["eval"][: first["eval"]], None),
                "pooled_prompt_strict": sum(all(x.strict) for x in pooled) / len(pooled),
                **{name: {**asdict(it.ifeval_metrics(s[k])), "cut": sum(cut[ref.name][k])} for name, k in readings},
            }
        )
    comparisons = []
    for a, b in pairs:
        for split in (*SPLITS, "pooled", *(k for _, k in readings)):
            sa = scores[a]["eval"] + scores[a]["eval2"] if split == "pooled" else scores[a][split]
            sb = scores[b]["eval"] + scores[b]["eval2"] if split == "pooled" else scores[b][split]
            comparisons += [comparison(a, b, split, level, sa, sb) for level in ("prompt", "instruction")]
    table = {
        "sizes": {split: len(ts) for split, ts in tasks.items()},
        "run_sizes": first,
        "few": {
            "prompts": len(few),
            "instructions": sum(len(t.instruction_ids) for t in few),
            "run_budget": "few@"
            + "/".join(str(n) for n in sorted({run_config(r)[0].generation.max_new_tokens for r in refs})),
            "budget": budget_key if args.few_budget else None,
        }
        if few
        else None,
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "models": models,
        "comparisons": comparisons,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(table, command, time.monotonic() - started)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(table, indent=1))
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
