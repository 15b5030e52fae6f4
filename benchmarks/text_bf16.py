"""bfloat16 against float32 on this CPU, same run: SmolLM2-135M-Instruct on the text world's prompts, each stage as a
round runs it (`dtype: bfloat16` against the default float32), and what the judge's labels lose to the rounding.

- generation tokens/s: batched, left-padded, length-sorted sampling with a KV cache;
- judge pairs/s: ImplicitRewardJudge; in float32 as a round runs it (π_{i-1}'s log-probs kept from sampling where
  the answer re-encodes to its sampled ids), in bfloat16 rescoring π_{i-1} too (sampling keeps no reduced-precision
  log-probs), both on the same pairs sampled in float32;
- training pairs/s with stored reference log-probs (the policy forward and backward only);
- agreement: labels equal, and |Δ reward| against the rewards' own margins, bfloat16 judge vs float32 judge.

    python benchmarks/text_bf16.py [--adapter DIR] [--threads 2] [--quick] [--out benchmarks/results/text_bf16.md]

`--adapter`: π_{i-1} as a LoRA adapter folder (e.g. a run's `round_0/adapter`, the seed round's π_0); without it
a random adapter (benchmarks/throughput.py's). Only a CPU with native bf16 instructions (AVX512-BF16 or AMX) gains:
elsewhere PyTorch emulates them and bfloat16 is slower than float32.
"""
# ruff: noqa: E402  (the thread settings below must come before torch is imported)

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks import throughput as tp
from engine.method.models import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "text_bf16.md"
DTYPES = ("float32", "bfloat16")


def workload(quick: bool) -> tp.Workload:
    if quick:
        return tp.Workload(
            "smollm2",
            "SmolLM2-135M-Instruct",
            "smollm2",
            gen_prompts=2,
            max_new_tokens=8,
            gen_batch=4,
            judge_pairs=4,
            judge_batch=4,
            train_pairs=4,
            micro_batch=4,
            batch=4,
            trl_stock=False,
        )
    # a round's sizes (text_demo.yaml: ≤ 128 new tokens, generation batch 64, judge batch 16, train batch 4), scaled
    # down so that both dtypes run in about 5 minutes on 2 cores
    return tp.Workload(
        "smollm2",
        "SmolLM2-135M-Instruct",
        "smollm2",
        gen_prompts=16,
        max_new_tokens=128,
        gen_batch=32,
        judge_pairs=16,
        judge_batch=16,
        train_pairs=8,
        micro_batch=4,
        batch=4,
        trl_stock=False,
    )


def label_agreement(low: dict, high: dict) -> dict:
    """The bfloat16 judge against the float32 one on the same pairs: equal labels, and how large the rewards'
    rounding is next to their margins (a label can only flip where |margin| is below about twice the rounding)."""
    diffs = [abs(x - y) for k in ("reward_a", "reward_b") for x, y in zip(low[k], high[k])]
    margins = [abs(a - b) for a, b in zip(high["reward_a"], high["reward_b"])]
    same = [x == y for x, y in zip(low["a_preferred"], high["a_preferred"])]
    return dict(
        pairs=len(same),
        labels_equal=sum(same),
        max_reward_diff=max(diffs),
        median_reward_diff=statistics.median(diffs),
        median_margin=statistics.median(margins),
        flipped_margins=[m for ok, m in zip(same, margins) if not ok],
    )


def run(w: tp.Workload, prepared: dict, workdir: Path, threads: int, log) -> dict:
    from engine.worlds.text_world import TextWorldSize, draw_splits

    prompts = [task.messages() for task in draw_splits(TextWorldSize(), seed=0).pool]
    base = dict(
        threads=threads,
        model_dir=prepared["model_dir"],
        prompts=prompts,
        adapter_dir=prepared["adapter_dir"],
        pairs_file=str(workdir / "pairs.json"),
    )
    out: dict = {dtype: {} for dtype in DTYPES}
    made = tp.run_task(dict(base, w=asdict(w), task="prepare_pairs"))
    log(f"{made['pairs']} pairs sampled in float32 for judging and training")
    for dtype in DTYPES:
        task = dict(base, w=asdict(replace(w, dtype=dtype)))
        r = out[dtype]
        r["generate"] = tp.run_task(dict(task, task="generate", variant="studio"))
        log(f"[{dtype}] generate: {r['generate']['tokens_per_s']:.1f} tok/s, {r['generate']['seconds']:.1f} s")
        r["judge"] = tp.run_task(dict(task, task="judge", variant="studio" if dtype == "float32" else "rescore"))
        log(
            f"[{dtype}] judge: {r['judge']['pairs_per_s']:.3f} pairs/s ({r['judge']['sampled_logps']} pairs with "
            f"sampled log-probs), {r['judge']['seconds']:.1f} s"
        )
        judged = {k: out["float32"]["judge"][k] for k in ("a_preferred", "logp_policy_a", "logp_policy_b")}
        r["train"] = tp.run_task(dict(task, task="train", variant="stored", judged=judged))
        log(
            f"[{dtype}] train: {r['train']['pairs_per_s']:.3f} pairs/s, {r['train']['seconds']:.1f} s "
            f"({r['train']['steps']} steps)"
        )
    out["agreement"] = label_agreement(out["bfloat16"]["judge"], out["float32"]["judge"])
    return out


def ratios(r: dict) -> dict:
    f, b = r["float32"], r["bfloat16"]
    return dict(
        generate=b["generate"]["tokens_per_s"] / f["generate"]["tokens_per_s"],
        judge=b["judge"]["pairs_per_s"] / f["judge"]["pairs_per_s"],
        train=b["train"]["pairs_per_s"] / f["train"]["pairs_per_s"],
    )


def render(report: dict) -> str:
    r, q, w = report["result"], report["ratios"], report["workload"]
    f, b, a = r["float32"], r["bfloat16"], r["agreement"]
    lines = [
        "# bfloat16 against float32 on this CPU: SmolLM2-135M-Instruct",
        "",
        f"`{report['command']}` — {report['date']}, {report['machine']['cpu']}, native bf16: "
        f"{report['native_bf16']}, {report['machine']['torch_threads']} torch threads, load average "
        f"{report['load_before'][0]:.1f} before and {report['load_after'][0]:.1f} after, "
        f"{report['seconds']:.0f} s. π_{{i-1}}: {report['adapter']}.",
        "",
        "| stage | float32 | bfloat16 | ratio | peak RSS float32 / bfloat16 (MB) |",
        "|---|---|---|---|---|",
        f"| generation, {w['gen_prompts']} prompts × 2, ≤ {w['max_new_tokens']} tokens | "
        f"{f['generate']['tokens_per_s']:.1f} tok/s | {b['generate']['tokens_per_s']:.1f} tok/s | "
        f"{q['generate']:.2f}× | {f['generate']['peak_rss_mb']:.0f} / {b['generate']['peak_rss_mb']:.0f} |",
        f"| judge, {a['pairs']} pairs (float32 as a round runs it: {f['judge']['sampled_logps']} pairs with "
        f"sampled log-probs; bfloat16 rescores π_{{i-1}}) | {f['judge']['pairs_per_s']:.3f} pairs/s | "
        f"{b['judge']['pairs_per_s']:.3f} pairs/s | {q['judge']:.2f}× | {f['judge']['peak_rss_mb']:.0f} / "
        f"{b['judge']['peak_rss_mb']:.0f} |",
        f"| training, {w['train_pairs']} pairs, stored reference log-probs | {f['train']['pairs_per_s']:.3f} "
        f"pairs/s | {b['train']['pairs_per_s']:.3f} pairs/s | {q['train']:.2f}× | "
        f"{f['train']['peak_rss_mb']:.0f} / {b['train']['peak_rss_mb']:.0f} |",
        "",
        f"Judge labels, bfloat16 against float32: {a['labels_equal']}/{a['pairs']} equal. |Δ reward| median "
        f"{a['median_reward_diff']:.2e}, max {a['max_reward_diff']:.2e}, against a median |margin| of "
        f"{a['median_margin']:.2e}; margins of the flipped pairs: "
        f"{', '.join(f'{m:.2e}' for m in a['flipped_margins']) or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", type=Path, help="π_{i-1}: a LoRA adapter folder (default: a random one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2: this machine)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = "python benchmarks/text_bf16.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    load_before = os.getloadavg()

    def log(text: str) -> None:
        print(f"{time.perf_counter() - started:7.1f}s  {text}", flush=True)

    from engine.worlds.smollm2 import fetch

    w = workload(args.quick)
    with tempfile.TemporaryDirectory(prefix="spa-text-bf16-") as tmp:
        workdir = Path(tmp)
        prepared = tp.run_task(dict(task="prepare_model", source=str(fetch().path), workdir=str(workdir)))
        if args.adapter:
            prepared["adapter_dir"] = str(args.adapter)
        result = run(w, prepared, workdir, args.threads, log)
    report = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=command,
        machine=tp.machine(args.threads, {}),
        native_bf16=cpu_has_native_bf16(),
        load_before=load_before,
        load_after=os.getloadavg(),
        workload=asdict(w),
        result=result,
        ratios=ratios(result),
        adapter=str(args.adapter) if args.adapter else "a random LoRA adapter",
        seconds=time.perf_counter() - started,
    )
    text = render(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
