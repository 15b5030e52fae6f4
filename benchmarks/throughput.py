"""The cost of a round: generation, judging and training throughput against the naive way, measured in one run.

For two models — the embedded demo model and a randomly initialised ~100M-parameter Llama (weights do not matter
for speed) — this measures, each variant in its own forked process so that peak memory is comparable:

- generation tokens/s: engine.method.generation batched and left-padded, against one prompt per `generate` call;
- judge pairs/s: the studio's ImplicitRewardJudge as a round runs it (π_{i-1}'s log-probs kept from sampling,
  generation.Sample.logp, so only π_init runs: the LoRA model with its adapters switched off, each prompt run
  once for both answers, only response positions projected onto the vocabulary), the same judge rescoring
  π_{i-1} too, and the naive judge (a second full copy of the reference model in memory, each sequence scored
  alone with full logits), with the largest reward difference and the label agreement ("at equal results");
- training pairs/s: train_dpo with the reference log-probs the judge stored, against the same trainer computing
  them with a reference forward pass every step (what TRL's DPOTrainer does by default), and against a stock
  `trl.DPOTrainer`; same rows, same steps, same seed.

Peak memory is the process's peak RSS (getrusage) less its RSS when the variant started (CUDA: peak allocated).
For the ~100M model both judges' achieved FLOP/s (≈ 2·params·tokens/s) are set against the device's measured matmul
rate in the same dtype, which bounds what any judge at equal results can gain; on a GPU it runs again in bf16.

    python benchmarks/throughput.py [--quick] [--out benchmarks/results/throughput.md]

writes the table to --out and the raw figures (with per-pair rewards of both judges) next to it as .json.
OMP_WAIT_POLICY defaults to PASSIVE: on a shared machine spinning OpenMP threads make a 2-thread forward pass
several times slower, which would measure the neighbours instead of the code.
"""
# ruff: noqa: E402  (the thread settings below must come before torch is imported)

from __future__ import annotations

import os

if __name__ == "__main__":  # before the OpenMP runtime starts (torch import); imported (tests), nothing changes
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import copy
import datetime
import json
import logging
import multiprocessing
import platform
import resource
import shlex
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil
import torch
from transformers import PrinterCallback, TrainerCallback

from engine.config import JudgeConfig, LoraConfig, RunConfig, TrainConfig
from engine.method import generation, models
from engine.method.encoding import prompt_ids, response_ids
from engine.method.judges import implicit_reward, judge_preference
from engine.method.models import Policy
from engine.method.preference_data import TrainRow
from engine.method.trainer import RefineSettings, TrainSettings, dpo_config, train_dpo
from engine.runtime.judge_setup import judge_from_config
from engine.worlds.toy_model import char_tokenizer, random_llama

ROOT = Path(__file__).resolve().parents[1]
BETA = 0.1
LORA = LoraConfig(r=16, alpha=32, dropout=0.0, target_modules="all-linear")  # configs/demo.yaml's
ADAPTER_SPREAD = 0.01  # std of the random LoRA B: the policy (π_{i-1}) differs from π_init, so rewards are not all 0
LLAMA_100M = dict(hidden=768, layers=12, heads=12, intermediate=2560)  # 99.2M parameters with the char vocabulary
JUDGE_TARGET, TRAIN_TARGET = 5.0, 1.3
REWARD_TOLERANCE, CLEAR_MARGIN = 1e-4, 1e-4  # float32: |Δr| between the judges, and a margin no rounding flips
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "throughput.md"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    source: str  # "demo" or "llama100m"
    device: str = "cpu"
    dtype: str = "float32"
    gen_prompts: int = 16  # prompts sampled (2 samples each) by both generation variants
    max_new_tokens: int = 32
    gen_batch: int = 32  # sequences per generate call, the studio's way
    judge_pairs: int = 64
    judge_batch: int = 16
    train_pairs: int = 32
    micro_batch: int = 8
    batch: int = 8
    lr: float = 5e-4
    trl_stock: bool = True


def workloads(quick: bool, accelerator: str | None) -> list[Workload]:
    """CPU: the demo model at the demo config's batch sizes and the ~100M Llama at the defaults, sized so that the
    whole run stays well inside 30 minutes on 2 busy cores. `accelerator`: the device of the bf16 section."""
    if quick:
        out = [
            Workload(
                "demo",
                "demo model",
                "demo",
                gen_prompts=8,
                max_new_tokens=16,
                gen_batch=128,
                judge_pairs=48,
                judge_batch=64,
                train_pairs=32,
                micro_batch=16,
                batch=16,
            ),
            Workload(
                "llama100m",
                "random Llama ~100M",
                "llama100m",
                gen_prompts=2,
                max_new_tokens=8,
                judge_pairs=4,
                train_pairs=4,
                micro_batch=4,
                batch=4,
            ),
        ]
    else:
        out = [
            Workload(
                "demo",
                "demo model",
                "demo",
                gen_prompts=64,
                max_new_tokens=32,
                gen_batch=128,
                judge_pairs=512,
                judge_batch=64,
                train_pairs=256,
                micro_batch=16,
                batch=32,
            ),
            Workload(
                "llama100m",
                "random Llama ~100M",
                "llama100m",
                gen_prompts=16,
                max_new_tokens=32,
                judge_pairs=64,
                judge_batch=16,
                train_pairs=32,
                micro_batch=8,
                batch=8,
            ),
        ]
    if accelerator == "cuda":
        out.append(
            Workload(
                "llama100m-bf16",
                "random Llama ~100M, bf16 on the GPU",
                "llama100m",
                device="cuda",
                dtype="bfloat16",
                gen_prompts=16 if quick else 64,
                max_new_tokens=32 if quick else 128,
                gen_batch=128,
                judge_pairs=64 if quick else 512,
                judge_batch=64,
                train_pairs=32 if quick else 256,
                micro_batch=16,
                batch=32,
            )
        )
    elif accelerator == "cpu":  # --bf16-on-cpu: the GPU section's code path on the CPU; timings mean nothing
        out.append(
            Workload(
                "llama100m-bf16",
                "random Llama ~100M, bf16 (CPU dry run of the GPU section)",
                "llama100m",
                dtype="bfloat16",
                gen_prompts=2,
                max_new_tokens=8,
                judge_pairs=4,
                train_pairs=4,
                micro_batch=4,
                batch=4,
            )
        )
    return out


# measuring ---------------------------------------------------------------------------------------------------------


class Meter:
    """Wall time of the timed region (device-synchronised) and the memory peak of the variant's process."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start_rss = psutil.Process().memory_info().rss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.start_cuda = torch.cuda.memory_allocated(device)
        self.seconds = 0.0

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        self.sync()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds += time.perf_counter() - self._t

    def memory(self) -> dict:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        out = dict(peak_rss_mb=peak / 2**20, delta_rss_mb=(peak - self.start_rss) / 2**20)
        if self.device.type == "cuda":
            top = torch.cuda.max_memory_allocated(self.device)
            out.update(peak_cuda_mb=top / 2**20, delta_cuda_mb=(top - self.start_cuda) / 2**20)
        return out


def setup_torch(threads: int, device: str) -> torch.device:
    torch.set_num_threads(threads)
    return torch.device(device)


def load_base(task: dict, device: torch.device):
    dtype = models.pick_dtype(device, task["w"]["dtype"])
    tok = models.load_tokenizer(task["model_dir"])
    return models.load_base_model(task["model_dir"], device, dtype), tok


def read_pairs(task: dict, n: int) -> list[dict]:
    pairs = json.loads(Path(task["pairs_file"]).read_text())
    if len(pairs) < n:
        raise RuntimeError(f"only {len(pairs)} distinct pairs were generated, {n} are needed")
    return pairs[:n]


def prompts_for(task: dict, n: int | None = None) -> list[list[dict]]:
    """The first n prompts of the task's own list, or of the demo world's prompt pool."""
    if task.get("prompts") is not None:
        rows = task["prompts"]
    else:
        from engine.worlds.demo_world import build_demo_world, load_jsonl

        rows = [r["prompt"] for r in load_jsonl(build_demo_world().pool_file)]
    if n is not None and n > len(rows):
        raise ValueError(f"{len(rows)} prompts available, {n} asked for")
    return rows if n is None else rows[:n]


# tasks (each runs in its own forked process) -----------------------------------------------------------------------


def task_probe(task: dict) -> dict:
    """What the machine has; run in a child so that the parent never initialises CUDA before forking."""
    info = dict(cuda=torch.cuda.is_available())
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
    return info


def task_prepare_model(task: dict) -> dict:
    """The base model folder and a LoRA adapter (random B: the policy π_{i-1} ≠ π_init) saved next to it."""
    work = Path(task["workdir"])
    if task["source"] == "demo":
        from engine.worlds.demo_world import build_demo_world

        model_dir = build_demo_world().model_dir
        base = models.load_base_model(str(model_dir), torch.device("cpu"), torch.float32)
    elif task["source"] != "llama100m":  # a model folder (the tests' toy model)
        model_dir = Path(task["source"])
        base = models.load_base_model(str(model_dir), torch.device("cpu"), torch.float32)
    else:
        model_dir = work / "llama100m"
        tok = char_tokenizer()
        base = random_llama(len(tok), max_positions=1024, seed=0, **LLAMA_100M)
        base.generation_config.eos_token_id = tok.eos_token_id
        base.generation_config.pad_token_id = tok.pad_token_id
        base.save_pretrained(model_dir, safe_serialization=True)
        tok.save_pretrained(model_dir)
    params = sum(p.numel() for p in base.parameters())
    peft_model = models.with_lora(base, LORA)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * ADAPTER_SPREAD)
    adapter_dir = work / f"{Path(task['source']).name}-adapter"
    peft_model.save_pretrained(adapter_dir, safe_serialization=True)
    return dict(model_dir=str(model_dir), adapter_dir=str(adapter_dir), params=params)


def task_prepare_pairs(task: dict) -> dict:
    """Pairs to judge and train on: 2 samples per pool prompt from the policy (the round's generation step),
    identical pairs dropped as the round drops them. Untimed."""
    w = Workload(**task["w"])
    device = setup_torch(task["threads"], w.device)
    base, tok = load_base(task, device)
    policy = models.with_lora(base, LORA, adapter_dir=task["adapter_dir"], trainable=False)
    need, pairs, used = w.judge_pairs, [], 0
    pool = prompts_for(task)
    while len(pairs) < need and used < len(pool):
        chunk = pool[used : used + max(2 * (need - len(pairs)), 16)]
        used += len(chunk)
        settings = generation.SamplingSettings(
            max_new_tokens=w.max_new_tokens, batch_size=w.gen_batch, seed=1000 + used
        )
        for prompt, (a, b) in zip(chunk, generation.generate(policy, tok, chunk, settings)):
            if a.text != b.text and len(pairs) < need:
                pairs.append(dict(prompt=prompt, a=a.text, b=b.text, logp_a=a.logp, logp_b=b.logp))
    Path(task["pairs_file"]).write_text(json.dumps(pairs))
    return dict(pairs=len(pairs), prompts_sampled=used)


def task_generate(task: dict) -> dict:
    """Sampling tokens/s: the studio's batches of `gen_batch` sequences, or one prompt (its 2 samples) per call."""
    w = Workload(**task["w"])
    device = setup_torch(task["threads"], w.device)
    meter = Meter(device)
    base, tok = load_base(task, device)
    policy = models.with_lora(base, LORA, adapter_dir=task["adapter_dir"], trainable=False)
    prompts = prompts_for(task, w.gen_prompts)
    batch = w.gen_batch if task["variant"] == "studio" else 2
    settings = generation.SamplingSettings(samples_per_prompt=2, max_new_tokens=w.max_new_tokens, batch_size=batch)
    generation.generate(policy, tok, prompts[:1], replace(settings, max_new_tokens=2))  # warm-up
    with meter:
        samples = generation.generate(policy, tok, prompts, settings)
    tokens = sum(s.n_tokens for pair in samples for s in pair)
    return dict(
        seconds=meter.seconds,
        sequences=2 * len(prompts),
        tokens=tokens,
        tokens_per_s=tokens / meter.seconds,
        **meter.memory(),
    )


def naive_logp(model, tok, prompt, response, device) -> float:
    """One sequence, no padding, full-vocabulary log-softmax at every position: the straightforward way."""
    p, r = prompt_ids(tok, prompt), response_ids(tok, response)
    logprobs = model(input_ids=torch.tensor([p + r], device=device)).logits[0].float().log_softmax(-1)
    positions = torch.arange(len(p) - 1, len(p) + len(r) - 1, device=device)
    return logprobs[positions, torch.tensor(r, device=device)].double().sum().item()


def work_tokens(tok, prompts, resp_a, resp_b, variant: str, sampled) -> int:
    """Tokens the variant runs through a model (unpadded), the arithmetic behind its FLOP/s: naive, every
    sequence under both models; rescore, each prompt once and both answers under both models; studio, the same
    under π_init and under π_{i-1} only for pairs that lack sampled log-probs."""
    lengths = [
        (len(prompt_ids(tok, p)), len(response_ids(tok, a)), len(response_ids(tok, b)))
        for p, a, b in zip(prompts, resp_a, resp_b)
    ]
    if variant == "naive":
        return sum(2 * (2 * p + a + b) for p, a, b in lengths)
    rescored = [i for i, (x, y) in enumerate(sampled or [(None, None)] * len(lengths)) if x is None or y is None]
    return sum(p + a + b for p, a, b in lengths) + sum(sum(lengths[i]) for i in rescored)


def task_judge(task: dict) -> dict:
    """Judge pairs/s. studio: ImplicitRewardJudge on one LoRA model with π_{i-1}'s log-probs from sampling, as the
    judge stage gets them; rescore: the same judge computing π_{i-1}'s too. naive: the LoRA policy plus a second
    full copy of π_init, one sequence at a time, for both responses under both models."""
    w = Workload(**task["w"])
    device = setup_torch(task["threads"], w.device)
    meter = Meter(device)
    pairs = read_pairs(task, w.judge_pairs)
    prompts, resp_a, resp_b = [p["prompt"] for p in pairs], [p["a"] for p in pairs], [p["b"] for p in pairs]
    base, tok = load_base(task, device)
    sampled = None
    if task["variant"] == "studio":
        sampled = [(p["logp_a"], p["logp_b"]) for p in pairs]
    elif task["variant"] == "studio_all":  # every pair as sampling keeps them from a trained model's answers
        known = task["rescored"]
        sampled = [
            (
                p["logp_a"] if p["logp_a"] is not None else known["logp_policy_a"][i],
                p["logp_b"] if p["logp_b"] is not None else known["logp_policy_b"][i],
            )
            for i, p in enumerate(pairs)
        ]
    if task["variant"] in ("studio", "studio_all", "rescore"):
        policy = models.with_lora(base, LORA, adapter_dir=task["adapter_dir"], trainable=False)
        cfg = RunConfig(model=task["model_dir"], beta=BETA, judge=JudgeConfig(batch_size=w.judge_batch))
        judge = judge_from_config(cfg, task["model_dir"], lambda: Policy(policy, tok))
        judge.judge(prompts[:2], resp_a[:2], resp_b[:2])  # warm-up
        with meter:
            prefs = judge.judge(prompts, resp_a, resp_b, policy_logps=sampled)
        logps = {
            k: [getattr(p, k) for p in prefs] for k in ("logp_policy_a", "logp_policy_b", "logp_init_a", "logp_init_b")
        }
    else:
        reference = copy.deepcopy(base).eval()  # the second full model in memory
        policy = models.with_lora(base, LORA, adapter_dir=task["adapter_dir"], trainable=False)

        def score(n):
            out = {k: [] for k in ("logp_policy_a", "logp_policy_b", "logp_init_a", "logp_init_b")}
            with torch.no_grad():
                for prompt, a, b in zip(prompts[:n], resp_a[:n], resp_b[:n]):
                    for side, response in (("a", a), ("b", b)):
                        out[f"logp_policy_{side}"].append(naive_logp(policy, tok, prompt, response, device))
                        out[f"logp_init_{side}"].append(naive_logp(reference, tok, prompt, response, device))
            return out

        score(2)  # warm-up
        with meter:
            logps = score(len(pairs))
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in logps.items()}
    reward_a = implicit_reward(t["logp_policy_a"], t["logp_init_a"], BETA)
    reward_b = implicit_reward(t["logp_policy_b"], t["logp_init_b"], BETA)
    a_preferred, _, _ = judge_preference(reward_a, reward_b)
    tokens = work_tokens(tok, prompts, resp_a, resp_b, task["variant"], sampled)
    kept = sum(a is not None and b is not None for a, b in sampled or [])
    return dict(
        seconds=meter.seconds,
        pairs=len(pairs),
        pairs_per_s=len(pairs) / meter.seconds,
        tokens=tokens,
        tokens_per_s=tokens / meter.seconds,
        sampled_logps=kept,
        reward_a=reward_a.tolist(),
        reward_b=reward_b.tolist(),
        a_preferred=a_preferred.tolist(),
        **logps,
        **meter.memory(),
    )


class Clock(TrainerCallback):
    """Times trainer.train() from its first to its last step and keeps the logged losses."""

    def __init__(self, meter: Meter):
        self.meter, self.losses = meter, []

    def on_train_begin(self, args, state, control, **kw):
        self.meter.__enter__()

    def on_train_end(self, args, state, control, **kw):
        self.meter.__exit__(None, None, None)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


def train_rows(task: dict, n: int, stored: bool) -> list[TrainRow]:
    """The judged pairs as a round trains them: chosen = the judge's pick, reference log-probs = the policy
    log-probs the judge computed (π_{i-1} is the round's reference), or none."""
    pairs, judged = read_pairs(task, n), task["judged"]
    rows = []
    for i, p in enumerate(pairs):
        a_first = judged["a_preferred"][i]
        chosen, rejected = (p["a"], p["b"]) if a_first else (p["b"], p["a"])
        lc, lr = judged["logp_policy_a"][i], judged["logp_policy_b"][i]
        if not a_first:
            lc, lr = lr, lc
        rows.append(
            TrainRow(
                pair_id=i,
                prompt=p["prompt"],
                chosen=chosen,
                rejected=rejected,
                ref_chosen_logp=lc if stored else None,
                ref_rejected_logp=lr if stored else None,
            )
        )
    return rows


def task_train(task: dict) -> dict:
    """Training pairs/s on the same rows and steps. stored: train_dpo with the judge's log-probs (policy forward
    only); stored_refine: the same with round 1's noise detection (λ = 0.5 needs the reference LOGITS, so a reference
    forward runs anyway); recompute: no stored log-probs, a reference forward every step; trl: stock
    trl.DPOTrainer on the PEFT model (its own tokenisation, right padding, "ref" adapter copy)."""
    w = Workload(**task["w"])
    device = setup_torch(task["threads"], w.device)
    meter = Meter(device)
    variant = task["variant"]
    cfg = RunConfig(
        model=w.source,
        beta=BETA,
        learning_rate=w.lr,
        epochs=1,
        batch_size=w.batch,
        train=TrainConfig(micro_batch_size=w.micro_batch),
        seed=0,
    )
    settings = replace(TrainSettings.for_round(cfg, 0), bf16=device.type == "cuda" and w.dtype == "bfloat16")
    rows = train_rows(task, w.train_pairs, stored=variant in ("stored", "stored_refine"))
    base, tok = load_base(task, device)
    model = models.with_lora(base, LORA, adapter_dir=task["adapter_dir"], trainable=True)
    clock = Clock(meter)
    if variant == "trl":
        from datasets import Dataset
        from trl import DPOTrainer

        data = Dataset.from_list(
            [
                dict(
                    prompt=r.prompt,
                    chosen=[{"role": "assistant", "content": r.chosen}],
                    rejected=[{"role": "assistant", "content": r.rejected}],
                )
                for r in rows
            ]
        )
        with tempfile.TemporaryDirectory(prefix="spa-bench-trl-") as out:
            args = dpo_config(settings, len(rows), out, use_cpu=device.type == "cpu")
            args.remove_unused_columns = True
            t0 = time.perf_counter()
            trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[clock])
            trainer.remove_callback(PrinterCallback)
            setup = time.perf_counter() - t0
            trainer.train()
        steps = trainer.state.global_step
    else:
        refine = RefineSettings(lam=0.5) if variant == "stored_refine" else None
        t0 = time.perf_counter()
        result = train_dpo(model, tok, rows, settings, refine, reference="ref_adapter", callbacks=[clock])
        setup = time.perf_counter() - t0 - meter.seconds
        steps = result.steps
    return dict(
        seconds=meter.seconds,
        setup_seconds=setup,
        pairs=len(rows),
        steps=steps,
        pairs_per_s=len(rows) / meter.seconds,
        losses=clock.losses,
        **meter.memory(),
    )


def task_matmul_ceiling(task: dict) -> dict:
    """The device's matmul rate in the workload's dtype: a large square torch.matmul, timed after warm-up."""
    device = setup_torch(task["threads"], task["device"])
    n, iters = (8192, 50) if device.type == "cuda" else (2048, 10)
    dtype = getattr(torch, task.get("dtype", "bfloat16"))
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    meter = Meter(device)
    with meter:
        for _ in range(iters):
            a @ b
    return dict(n=n, iters=iters, seconds=meter.seconds, tflops=2 * n**3 * iters / meter.seconds / 1e12)


TASKS = dict(
    probe=task_probe,
    prepare_model=task_prepare_model,
    prepare_pairs=task_prepare_pairs,
    generate=task_generate,
    judge=task_judge,
    train=task_train,
    matmul=task_matmul_ceiling,
)


def run_task(task: dict, inline: bool = False) -> dict:
    """Run one task in a forked child (fresh peak-RSS counter, nothing left behind), or here when `inline`.
    The child's own output (progress bars, trainer logs) goes to a scratch file, shown only when it fails."""
    if inline:
        return TASKS[task["task"]](task)
    fd, path = tempfile.mkstemp(prefix="spa-bench-", suffix=".json")
    os.close(fd)
    log = Path(path).with_suffix(".log")
    try:
        child = multiprocessing.get_context("fork").Process(target=_child, args=(task, path, str(log)))
        child.start()
        child.join()
        text = Path(path).read_text()
        result = json.loads(text) if text else {"error": f"the worker exited with code {child.exitcode}"}
        if "error" in result:
            output = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(
                f"{task['task']} {task.get('variant', '')} failed:\n{output[-4000:]}\n{result['error']}"
            )
    finally:
        os.unlink(path)
        log.unlink(missing_ok=True)
    return result


def _child(task: dict, path: str, log: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        result = TASKS[task["task"]](task)
    except BaseException:  # noqa: BLE001 - reported to the parent
        result = {"error": traceback.format_exc()}
    Path(path).write_text(json.dumps(result))


# the run -----------------------------------------------------------------------------------------------------------


def agreement(studio: dict, naive: dict) -> dict:
    diffs = [abs(x - y) for k in ("reward_a", "reward_b") for x, y in zip(studio[k], naive[k])]
    logp_diffs = [
        abs(x - y)
        for k in ("logp_policy_a", "logp_policy_b", "logp_init_a", "logp_init_b")
        for x, y in zip(studio[k], naive[k])
    ]
    margins = [abs(a - b) for a, b in zip(studio["reward_a"], studio["reward_b"])]
    same = [x == y for x, y in zip(studio["a_preferred"], naive["a_preferred"])]
    # A label may flip on a near-tie from float rounding alone; any flip on a clear margin is a real difference.
    clear = sum(not ok for ok, m in zip(same, margins) if m > CLEAR_MARGIN)
    return dict(
        max_reward_diff=max(diffs),
        max_logp_diff=max(logp_diffs),
        labels_equal=sum(same),
        pairs=len(margins),
        min_reward_margin=min(margins),
        clear_label_flips=clear,
    )


def judges_equal(a: dict) -> bool:
    """float32 studio and naive judges give the same rewards to ~1e-5 and the same labels."""
    return a["max_reward_diff"] < REWARD_TOLERANCE and a["clear_label_flips"] == 0


def run_workload(
    w: Workload,
    prepared: dict,
    workdir: Path,
    threads: int,
    inline: bool,
    log,
    prompts: list[list[dict]] | None = None,
) -> dict:
    """Pairs, then generation, judge and training variants; `prompts` replaces the demo world's pool."""
    if w.train_pairs > w.judge_pairs:
        raise ValueError("training uses the judged pairs and their stored log-probs: train_pairs <= judge_pairs")
    base_task = dict(
        w=asdict(w),
        threads=threads,
        model_dir=prepared["model_dir"],
        prompts=prompts,
        adapter_dir=prepared["adapter_dir"],
        pairs_file=str(workdir / f"{w.key}-pairs.json"),
    )
    out = dict(workload=asdict(w), params=prepared["params"])
    t0 = time.perf_counter()
    out["pairs_made"] = run_task(dict(base_task, task="prepare_pairs"), inline)
    log(
        f"[{w.key}] {out['pairs_made']['pairs']} pairs sampled for judging and training "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    for stage, variants in (
        ("generate", ("naive", "studio")),
        ("judge", ("naive", "rescore", "studio", "studio_all")),
    ):
        out[stage] = {}
        for v in variants:
            extra = (
                dict(rescored={k: out["judge"]["rescore"][k] for k in ("logp_policy_a", "logp_policy_b")})
                if v == "studio_all"
                else {}
            )
            r = run_task(dict(base_task, task=stage, variant=v, **extra), inline)
            out[stage][v] = r
            rate = f"{r['tokens_per_s']:.1f} tok/s" if stage == "generate" else f"{r['pairs_per_s']:.2f} pairs/s"
            log(f"[{w.key}] {stage} {v}: {rate}, {r['seconds']:.1f} s, peak RSS +{r['delta_rss_mb']:.0f} MB")
    out["agreement"] = agreement(out["judge"]["studio"], out["judge"]["naive"])
    out["agreement_rescore"] = agreement(out["judge"]["rescore"], out["judge"]["naive"])
    out["agreement_all"] = agreement(out["judge"]["studio_all"], out["judge"]["naive"])
    for key in ("agreement", "agreement_rescore"):
        log(
            f"[{w.key}] judges agree ({key}): max |Δr| = {out[key]['max_reward_diff']:.2e}, labels "
            f"{out[key]['labels_equal']}/{out[key]['pairs']}"
        )
    judged = {k: out["judge"]["studio"][k] for k in ("a_preferred", "logp_policy_a", "logp_policy_b")}
    out["train"] = {}
    for v in ("recompute", "stored", "stored_refine") + (("trl",) if w.trl_stock else ()):
        r = run_task(dict(base_task, task="train", variant=v, judged=judged), inline)
        out["train"][v] = r
        log(
            f"[{w.key}] train {v}: {r['pairs_per_s']:.2f} pairs/s, {r['seconds']:.1f} s ({r['steps']} steps), "
            f"peak RSS +{r['delta_rss_mb']:.0f} MB"
        )
    losses = [out["train"][v]["losses"] for v in ("stored", "recompute")]
    out["train_loss_max_diff"] = max(abs(a - b) for a, b in zip(*losses)) if all(losses) else None
    out["seconds"] = time.perf_counter() - t0
    return out


def ratios(r: dict) -> dict:
    g, j, t = r["generate"], r["judge"], r["train"]
    out = dict(
        generate=g["studio"]["tokens_per_s"] / g["naive"]["tokens_per_s"],
        judge=j["studio"]["pairs_per_s"] / j["naive"]["pairs_per_s"],
        judge_rescore=j["rescore"]["pairs_per_s"] / j["naive"]["pairs_per_s"],
        judge_all=j["studio_all"]["pairs_per_s"] / j["naive"]["pairs_per_s"],
        judge_memory=j["studio"]["delta_rss_mb"] / max(j["naive"]["delta_rss_mb"], 1e-9),
        train=t["stored"]["pairs_per_s"] / t["recompute"]["pairs_per_s"],
        train_refine=t["stored_refine"]["pairs_per_s"] / t["recompute"]["pairs_per_s"],
    )
    if "trl" in t:
        out["train_vs_trl"] = t["stored"]["pairs_per_s"] / t["trl"]["pairs_per_s"]
    return out


def machine(threads: int, probe: dict) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import peft
    import transformers
    import trl

    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        torch_threads=threads,
        memory_gb=psutil.virtual_memory().total / 2**30,
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        trl=trl.__version__,
        peft=peft.__version__,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        gpu=probe.get("gpu"),
        platform=platform.platform(),
    )


def mem(r: dict) -> str:
    text = f"{r['peak_rss_mb']:.0f} (+{r['delta_rss_mb']:.0f})"
    if "peak_cuda_mb" in r:
        text += f" / GPU {r['peak_cuda_mb']:.0f} (+{r['delta_cuda_mb']:.0f})"
    return text


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Cost of a round: throughput against the naive way",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, "
        f"{m['memory_gb']:.0f} GiB RAM{', GPU ' + m['gpu'] if m['gpu'] else ', no GPU'}; "
        f"load average {report['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} after",
        f"- software: Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
        f"trl {m['trl']}, peft {m['peft']}; OMP_WAIT_POLICY={m['omp_wait_policy']}",
        f"- command: `{report['command']}` ({report['seconds'] / 60:.1f} min)",
        "",
        "Every ratio is the studio's way over the naive way measured in the same run; each variant runs in "
        "its own process. Memory: peak RSS in MB (+ above the process's RSS when the variant started: the "
        "models, activations and optimiser state it added).",
        "",
    ]
    for key, r in report["results"].items():
        w, q, a = r["workload"], report["ratios"][key], r["agreement"]
        g, j, t = r["generate"], r["judge"], r["train"]

        def row(stage, variant, result, rate, ratio):
            return f"| {stage} | {variant} | {rate} | {ratio} | {mem(result)} |"

        def pairs(result, tokens=False):
            return f"{result['pairs_per_s']:.2f} pairs/s" + (
                f" ({result['tokens_per_s']:.0f} tokens/s)" if tokens else ""
            )

        lines += [
            f"## {w['title']} ({r['params'] / 1e6:.2f}M parameters, {w['device']}, {w['dtype']})",
            "",
            "| stage | variant | throughput | ratio | peak memory MB |",
            "|---|---|---|---|---|",
            row(
                "generation",
                "one prompt (2 samples) per call",
                g["naive"],
                f"{g['naive']['tokens_per_s']:.1f} tokens/s",
                "1.00",
            ),
            row(
                "generation",
                f"studio: batches of {w['gen_batch']}, left-padded",
                g["studio"],
                f"{g['studio']['tokens_per_s']:.1f} tokens/s",
                f"**{q['generate']:.2f}×**",
            ),
            row(
                "judge",
                "naive: 2nd full π_init model, batch 1, full logits",
                j["naive"],
                pairs(j["naive"], True),
                "1.00",
            ),
            row(
                "judge",
                f"studio rescoring π_{{i-1}} too: one LoRA model, batch {w['judge_batch']}, "
                "prompt run once per pair, response logits only",
                j["rescore"],
                pairs(j["rescore"], True),
                f"{q['judge_rescore']:.2f}×",
            ),
            row(
                "judge",
                f"studio as a round runs it: π_{{i-1}}'s log-probs kept from sampling "
                f"({j['studio']['sampled_logps']}/{j['studio']['pairs']} pairs), π_init pass only",
                j["studio"],
                pairs(j["studio"], True),
                f"**{q['judge']:.2f}×**",
            ),
            row(
                "judge",
                "studio with every pair's π_{i-1} log-probs kept (as sampling keeps them for a "
                "trained model's answers), π_init pass only",
                j["studio_all"],
                pairs(j["studio_all"], True),
                f"{q['judge_all']:.2f}×",
            ),
            row(
                "training",
                "reference forward every step (TRL's default)",
                t["recompute"],
                pairs(t["recompute"]),
                "1.00",
            ),
            row(
                "training",
                "studio: stored reference log-probs",
                t["stored"],
                pairs(t["stored"]),
                f"**{q['train']:.2f}×**",
            ),
            row(
                "training",
                "stored log-probs + noise detection λ = 0.5 (rounds ≥ 1)",
                t["stored_refine"],
                pairs(t["stored_refine"]),
                f"{q['train_refine']:.2f}×",
            ),
        ]
        if "trl" in t:
            lines.append(
                row(
                    "training",
                    "stock trl.DPOTrainer (PEFT, default reference)",
                    t["trl"],
                    pairs(t["trl"]),
                    f"{q['train_vs_trl']:.2f}× (studio / this)",
                )
            )
        loss_diff = r["train_loss_max_diff"]
        lines += [
            "",
            f"Workload: {2 * w['gen_prompts']} samples of up to {w['max_new_tokens']} new tokens; "
            f"{j['studio']['pairs']} pairs judged (tokens run through a model: naive {j['naive']['tokens']}, "
            f"rescoring {j['rescore']['tokens']}, studio {j['studio']['tokens']}); "
            f"{t['stored']['pairs']} pairs trained, {t['stored']['steps']} optimiser steps of {w['batch']} "
            f"(micro-batches of {w['micro_batch']}).",
            "",
            f"Equal results: largest |reward difference| studio vs naive judge {a['max_reward_diff']:.1e} "
            f"(log-probs {a['max_logp_diff']:.1e}); labels equal on {a['labels_equal']}/{a['pairs']} pairs "
            f"(smallest reward margin {a['min_reward_margin']:.1e}; flips on margins > {CLEAR_MARGIN:g}: "
            f"{a['clear_label_flips']}); rescoring: {r['agreement_rescore']['max_reward_diff']:.1e}, labels "
            f"equal on {r['agreement_rescore']['labels_equal']}/{r['agreement_rescore']['pairs']}. "
            f"Generation keeps the sampled log-probs in the studio row (one step past max_new_tokens for "
            f"the EOS log-prob of a cut answer). Training losses, stored vs recomputed "
            f"reference: largest difference {'n/a' if loss_diff is None else f'{loss_diff:.1e}'}. "
            f"Judge memory added: studio {j['studio']['delta_rss_mb']:.0f} MB, naive "
            f"{j['naive']['delta_rss_mb']:.0f} MB ({q['judge_memory']:.2f}×).",
            "",
        ]
        if key in report.get("ceiling", {}):
            c = report["ceiling"][key]
            lines += [
                f"Ceiling: measured {w['dtype']} matmul rate on the {w['device']} "
                f"{1000 * c['ceiling_tflops']:.1f} GFLOP/s ({c['n']}×{c['n']}); the studio judge with every "
                f"log-prob kept runs "
                f"{c['judge_tokens_per_s']:.0f} tokens/s ≈ {1000 * c['judge_tflops']:.1f} GFLOP/s "
                f"(2·params·tokens/s) = {100 * c['fraction']:.1f}% of the ceiling; the naive judge "
                f"{1000 * c['naive_tflops']:.1f} GFLOP/s = {100 * c['naive_fraction']:.1f}%. "
                f"{JUDGE_TARGET:g}× the naive pairs/s at the studio's tokens per pair would take "
                f"{100 * c['target_fraction']:.0f}% of the ceiling.",
                "",
            ]
    lines += ["## Targets", ""]
    for line in report["targets"]:
        lines.append(f"- {line}")
    return "\n".join(lines) + "\n"


def targets(report: dict) -> list[str]:
    out = []
    for key, q in report["ratios"].items():
        r = report["results"][key]
        if r["workload"]["device"] == "cpu" and r["workload"]["dtype"] == "float32":
            equal = all(judges_equal(r[k]) for k in ("agreement", "agreement_rescore", "agreement_all"))
            out.append(
                f"{r['workload']['title']}: judge {q['judge']:.2f}× naive pairs/s on CPU as sampled "
                f"({q['judge_all']:.2f}× with every log-prob kept, {q['judge_rescore']:.2f}× rescoring) "
                f"(target ≥ {JUDGE_TARGET:g}×, equal results: {'yes' if equal else 'NO'}) — "
                f"{'met' if q['judge'] >= JUDGE_TARGET and equal else 'NOT met'}"
            )
        else:
            out.append(f"{r['workload']['title']}: judge {q['judge']:.2f}× naive pairs/s (no target off the CPU)")
        out.append(
            f"{r['workload']['title']} ({r['workload']['device']}): training with stored reference log-probs "
            f"{q['train']:.2f}× per pair (target ≥ {TRAIN_TARGET:g}×) — "
            f"{'met' if q['train'] >= TRAIN_TARGET else 'NOT met'}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads: a smoke run of a couple of minutes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown table; the .json goes next to it")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--only", choices=["demo", "llama100m"], help="run one model's workloads")
    parser.add_argument("--no-gpu", action="store_true", help="skip the bf16 GPU section even when CUDA is there")
    parser.add_argument(
        "--bf16-on-cpu",
        action="store_true",
        help="run the GPU section's code on the CPU with tiny workloads (tests the path; no meaning)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = (
        "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:])
        if argv is None
        else "python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in argv)
    )
    load_before = os.getloadavg()

    def log(text: str) -> None:
        print(f"{time.perf_counter() - started:7.1f}s  {text}", flush=True)

    probe = run_task(dict(task="probe"))
    accelerator = None
    if args.bf16_on_cpu:
        accelerator = "cpu"
    elif probe["cuda"] and not args.no_gpu:
        accelerator = "cuda"
    plan = [w for w in workloads(args.quick, accelerator) if args.only is None or w.source == args.only]
    report = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=command,
        machine=machine(args.threads, probe),
        quick=args.quick,
        load_before=load_before,
        results={},
        ratios={},
        ceiling={},
    )
    log(
        f"{report['machine']['cpu']}, {args.threads} threads, GPU: {probe.get('gpu') or 'none'}; "
        f"load average {load_before[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="spa-bench-") as tmp:
        workdir = Path(tmp)
        prepared: dict[str, dict] = {}
        for w in plan:
            if w.source not in prepared:
                if w.source == "demo":
                    log("[demo] loading the demo world (built and cached on first use: about 2 minutes)")
                t0 = time.perf_counter()
                prepared[w.source] = run_task(dict(task="prepare_model", source=w.source, workdir=str(workdir)))
                log(
                    f"[{w.source}] model ready: {prepared[w.source]['params'] / 1e6:.2f}M parameters "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
            result = run_workload(w, prepared[w.source], workdir, args.threads, False, log)
            report["results"][w.key] = result
            report["ratios"][w.key] = ratios(result)
            if w.source == "llama100m":  # how far from the hardware both judges are
                ceiling = run_task(dict(task="matmul", device=w.device, dtype=w.dtype, threads=args.threads))
                studio, naive = result["judge"]["studio_all"], result["judge"]["naive"]
                flops = 2 * result["params"]
                report["ceiling"][w.key] = dict(
                    ceiling_tflops=ceiling["tflops"],
                    n=ceiling["n"],
                    judge_tokens_per_s=studio["tokens_per_s"],
                    judge_tflops=flops * studio["tokens_per_s"] / 1e12,
                    naive_tflops=flops * naive["tokens_per_s"] / 1e12,
                    fraction=flops * studio["tokens_per_s"] / 1e12 / ceiling["tflops"],
                    naive_fraction=flops * naive["tokens_per_s"] / 1e12 / ceiling["tflops"],
                    # the share of the ceiling that the target's pairs/s would take at the studio's tokens per pair
                    target_fraction=JUDGE_TARGET
                    * naive["pairs_per_s"]
                    * studio["tokens"]
                    / studio["pairs"]
                    * flops
                    / 1e12
                    / ceiling["tflops"],
                )
                log(
                    f"[{w.key}] matmul ceiling {ceiling['tflops']:.3f} TFLOP/s; judge "
                    f"{report['ceiling'][w.key]['judge_tflops']:.3f} TFLOP/s"
                )
    report["load_after"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - started
    report["targets"] = targets(report)
    text = render(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print()
    print(text)
    print(f"written: {args.out} and {args.out.with_suffix('.json')}")
    bad = [
        k
        for k, r in report["results"].items()
        if r["workload"]["dtype"] == "float32"
        and not all(judges_equal(r[k]) for k in ("agreement", "agreement_rescore", "agreement_all"))
    ]
    if bad:
        print(f"the studio and naive judges disagree on {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
