"""The cost of a round on the real model: SmolLM2-135M-Instruct on the text world's prompts, each variant against
its naive baseline in the same run (benchmarks/throughput.py's tasks, each in its own forked process):

- generation answers/s and tokens/s: the studio's batched, left-padded, length-sorted sampling with a KV cache,
  against one prompt (its two samples) per `generate` call;
- judge pairs/s: the round's ImplicitRewardJudge (π_{i-1}'s log-probs recorded while sampling, so only π_init runs;
  each prompt once for both answers; only response positions projected onto the 49k vocabulary), against the naive
  judge (full-vocabulary logits at every position, one sequence at a time, a second copy of π_init in memory);
  at equal results: the largest per-token log-prob difference between the two ways is measured on the same pairs;
- training pairs/s with the stored reference log-probs against recomputing them every step;
- peak RSS of each variant's process.

    python benchmarks/text_throughput.py [--quick] [--threads 1] [--out benchmarks/results/text_throughput.md]

On a shared machine the wall-clock figures measure the neighbours too: the ratios (same run, same load) are what
to read. OMP_WAIT_POLICY defaults to PASSIVE (see throughput.py).
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
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import throughput as tp
from engine.method import models, scoring
from engine.method.encoding import prompt_ids, response_ids

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "text_throughput.md"
JUDGE_TARGET = 3.0
TOKEN_TOLERANCE = 1e-4


def workload(quick: bool) -> tp.Workload:
    if quick:
        return tp.Workload(
            "smollm2",
            "SmolLM2-135M-Instruct",
            "smollm2",
            gen_prompts=2,
            max_new_tokens=8,
            gen_batch=16,
            judge_pairs=4,
            judge_batch=8,
            train_pairs=4,
            micro_batch=4,
            batch=4,
            trl_stock=False,
        )
    # sized for a shared 2-core machine (about 30 minutes there); answers as long as a round's
    return tp.Workload(
        "smollm2",
        "SmolLM2-135M-Instruct",
        "smollm2",
        gen_prompts=4,
        max_new_tokens=96,
        gen_batch=8,
        judge_pairs=8,
        judge_batch=8,
        train_pairs=4,
        micro_batch=4,
        batch=4,
        trl_stock=False,
    )


def token_logps_studio(model, tok, prompt, responses: list[str]) -> list[torch.Tensor]:
    """Per-token log-probs of each response the studio's way (shared prompt, response positions only)."""
    p_ids, p_mask = scoring.left_pad([prompt_ids(tok, prompt)], scoring._pad_id(tok))
    encoded = [response_ids(tok, r) for r in responses]
    r_ids, r_mask = scoring.right_pad(encoded, scoring._pad_id(tok))
    rows = torch.zeros(len(encoded), dtype=torch.long)
    logits = scoring.shared_prompt_logits(model, p_ids, p_mask, r_ids, r_mask, rows)
    out = []
    for row, r in enumerate(encoded):
        lg = logits[row, : len(r)].float()
        out.append(lg.gather(-1, r_ids[row, : len(r), None]).squeeze(-1) - torch.logsumexp(lg, -1))
    return out


def token_logps_naive(model, tok, prompt, response: str) -> torch.Tensor:
    p, r = prompt_ids(tok, prompt), response_ids(tok, response)
    logprobs = model(input_ids=torch.tensor([p + r])).logits[0].float().log_softmax(-1)
    return logprobs[torch.arange(len(p) - 1, len(p) + len(r) - 1), torch.tensor(r)]


def task_token_diff(task: dict) -> dict:
    """The largest per-token |Δ log-prob| between the studio's scoring and the naive one, under π_init."""
    torch.set_num_threads(task["threads"])
    pairs = json.loads(Path(task["pairs_file"]).read_text())[: task["n"]]
    tok = models.load_tokenizer(task["model_dir"])
    model = models.load_base_model(task["model_dir"], torch.device("cpu"), torch.float32)
    worst, tokens = 0.0, 0
    with torch.inference_mode():
        for p in pairs:
            studio = token_logps_studio(model, tok, p["prompt"], [p["a"], p["b"]])
            for got, text in zip(studio, (p["a"], p["b"])):
                naive = token_logps_naive(model, tok, p["prompt"], text)
                worst = max(worst, (got - naive).abs().max().item())
                tokens += len(naive)
    return dict(max_token_diff=worst, tokens=tokens, pairs=len(pairs))


tp.TASKS["token_diff"] = task_token_diff


def render(report: dict) -> str:
    r, q = report["result"], report["ratios"]
    g, j, t = r["generate"], r["judge"], r["train"]
    w = r["workload"]
    lines = [
        f"# Text world throughput: SmolLM2-135M-Instruct ({r['params'] / 1e6:.1f}M parameters)",
        "",
        f"`{report['command']}` — {report['date']}, {report['machine']['cpu']}, "
        f"{report['machine']['torch_threads']} torch threads, load average {report['load_before'][0]:.1f} before "
        f"and {report['load_after'][0]:.1f} after (a shared machine: read the ratios), "
        f"{report['seconds']:.0f} s.",
        "",
        "| stage | naive | studio | ratio | peak RSS naive / studio (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, key in (("generation", "generate"),):
        n, s = g["naive"], g["studio"]
        lines.append(
            f"| {name}, {w['gen_prompts']} prompts × 2, ≤{w['max_new_tokens']} tokens | "
            f"{n['sequences'] / n['seconds']:.2f} answers/s, {n['tokens_per_s']:.1f} tok/s | "
            f"{s['sequences'] / s['seconds']:.2f} answers/s, {s['tokens_per_s']:.1f} tok/s | "
            f"{q['generate']:.2f}× | {n['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} |"
        )
    lines.append(
        f"| judge, {w['judge_pairs']} pairs (as sampled: {j['studio']['sampled_logps']} pairs with π_{{i-1}} "
        f"log-probs kept) | {j['naive']['pairs_per_s']:.3f} pairs/s | {j['studio']['pairs_per_s']:.3f} "
        f"pairs/s | {q['judge']:.2f}× | {j['naive']['peak_rss_mb']:.0f} / {j['studio']['peak_rss_mb']:.0f} |"
    )
    lines.append(
        f"| judge, every π_{{i-1}} log-prob kept | | {j['studio_all']['pairs_per_s']:.3f} pairs/s | "
        f"{q['judge_all']:.2f}× | |"
    )
    lines.append(
        f"| judge, rescoring π_{{i-1}} too | | {j['rescore']['pairs_per_s']:.3f} pairs/s | "
        f"{q['judge_rescore']:.2f}× | |"
    )
    lines.append(
        f"| training, {w['train_pairs']} pairs (recompute reference / stored) | "
        f"{t['recompute']['pairs_per_s']:.3f} pairs/s | {t['stored']['pairs_per_s']:.3f} pairs/s | "
        f"{q['train']:.2f}× | {t['recompute']['peak_rss_mb']:.0f} / {t['stored']['peak_rss_mb']:.0f} |"
    )
    a, d = r["agreement"], report["token_diff"]
    lines += [
        "",
        "Equal results: per-token max |Δ log-prob| studio vs naive under π_init = "
        f"{d['max_token_diff']:.2e} "
        f"over {d['tokens']} tokens of {d['pairs']} pairs (tolerance {TOKEN_TOLERANCE:g}); judge rewards max "
        f"|Δr| = {a['max_reward_diff']:.2e}, labels equal {a['labels_equal']}/{a['pairs']}.",
        "",
        f"Target: judge ≥ {JUDGE_TARGET:g}× naive pairs/s at equal results — "
        f"{'met' if q['judge'] >= JUDGE_TARGET and d['max_token_diff'] <= TOKEN_TOLERANCE else 'NOT met'} "
        f"({q['judge']:.2f}×).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: a shared machine)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = "python benchmarks/text_throughput.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    load_before = os.getloadavg()

    def log(text: str) -> None:
        print(f"{time.perf_counter() - started:7.1f}s  {text}", flush=True)

    from engine.worlds.smollm2 import fetch
    from engine.worlds.text_world import TextWorldSize, draw_splits

    model_dir = fetch().path
    prompts = [task.messages() for task in draw_splits(TextWorldSize(), seed=0).pool]  # the text world's pool
    w = workload(args.quick)
    with tempfile.TemporaryDirectory(prefix="spa-text-bench-") as tmp:
        workdir = Path(tmp)
        prepared = tp.run_task(dict(task="prepare_model", source=str(model_dir), workdir=str(workdir)))
        log(f"model ready: {prepared['params'] / 1e6:.1f}M parameters")
        result = tp.run_workload(w, prepared, workdir, args.threads, False, log, prompts=prompts)
        diff = tp.run_task(
            dict(
                task="token_diff",
                model_dir=prepared["model_dir"],
                threads=args.threads,
                pairs_file=str(workdir / f"{w.key}-pairs.json"),
                n=min(8, w.judge_pairs),
            )
        )
    report = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=command,
        machine=tp.machine(args.threads, {}),
        load_before=load_before,
        load_after=os.getloadavg(),
        result=result,
        ratios=tp.ratios(result),
        token_diff=diff,
        seconds=time.perf_counter() - started,
    )
    text = render(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(text)
    return 0 if diff["max_token_diff"] <= TOKEN_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
