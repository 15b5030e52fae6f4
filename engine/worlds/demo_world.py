"""The embedded demo world: a tiny chat model, SFT-trained on a noisy teacher, plus its data files.

A fresh machine has no weights and no internet, so the studio builds this world itself (about two
minutes on two CPU cores) and caches it. The SFT model imitates a teacher that is right only part of
the time, so its samples vary in gold reward and a few dozen gold-labelled pairs carry real signal.
Everything is deterministic for a seed on one machine: prompts, SFT batches, samples and weights. Another
CPU's float kernels train a different SFT model from the same seed (`DemoWorld.fingerprint` tells them apart).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from engine.method.encoding import prompt_ids, response_ids
from engine.worlds.demo_task import (
    DOMAINS,
    Problem,
    gold_reward,
    gold_score_messages,
    random_problem,
    split_hedge,
    teacher_answer,
    teacher_mistake,
)
from engine.worlds.toy_model import char_tokenizer, random_llama

__all__ = [
    "VERSION",
    "DemoWorld",
    "WorldSize",
    "default_demo_dir",
    "build_demo_world",
    "gold_reward",
    "gold_score_messages",
    "load_jsonl",
    "fully_labelled_pairs",
]

VERSION = 2
SEED_FRACTION = 0.033  # the paper's seed: 2K of ~60K UltraFeedback labels
TEMPERATURE = 0.7  # section 1's sampling temperature, used for the pairs and the SFT gold score
SFT_DOMAIN_WEIGHTS = (1.5, 2.0, 0.5, 0.4)  # sort, reverse, next, max: more practice where the skill is slow to learn
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class WorldSize:
    """How big a world to build. The defaults are the real demo; tests use WorldSize.mini()."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    sft_steps: int = 800
    batch_size: int = 128
    learning_rate: float = 1e-2
    p_correct_start: float = 0.5  # the teacher's accuracy, falling linearly over SFT from start to end
    p_correct_end: float = 0.5
    pool: int = 1940
    validation: int = 128
    eval: int = 200
    samples_per_prompt: int = 4  # drawn per labelled prompt; the first two with different gold make the pair
    max_new_tokens: int = 24
    threads: int = 1  # tiny matrices gain little from a second thread, and a loaded machine hurts less

    @classmethod
    def mini(cls) -> "WorldSize":
        return cls(hidden=32, layers=1, heads=2, sft_steps=8, batch_size=16, pool=60, validation=6, eval=8)

    @property
    def seed_pairs(self) -> int:
        return max(2, round(SEED_FRACTION * self.pool))


@dataclass
class DemoWorld:
    root: Path
    model_dir: Path
    seed_file: Path
    pool_file: Path
    validation_file: Path
    eval_file: Path

    @classmethod
    def at(cls, root: Path) -> "DemoWorld":
        return cls(
            root=root,
            model_dir=root / "model",
            seed_file=root / "seed.jsonl",
            pool_file=root / "pool.jsonl",
            validation_file=root / "validation.jsonl",
            eval_file=root / "eval.jsonl",
        )

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "world.json").read_text())

    def fingerprint(self) -> str:
        """Which draw of the world a figure came from: the build is deterministic on one machine, but another
        CPU's float kernels train a different SFT model from the same seed."""
        digest = hashlib.sha256()
        for path in sorted(self.model_dir.glob("*.safetensors")):
            digest.update(path.read_bytes())
        sft = self.manifest["sft"]
        return f"SFT weights sha256 {digest.hexdigest()[:12]}, SFT gold {sft['gold_mean']:.3f}"


def default_demo_dir(seed: int = 0) -> Path:
    env = os.environ.get("SPA_DEMO_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "spa-studio" / f"demo-world-v{VERSION}-seed{seed}"


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --- data --------------------------------------------------------------------------------------


@dataclass
class Splits:
    """Held-out prompts, disjoint from each other and from everything the SFT model trains on."""

    eval: list[Problem]
    validation: list[Problem]
    seed: list[Problem]
    pool: list[Problem]

    def prompts(self) -> set[str]:
        return {p.prompt for group in (self.eval, self.validation, self.seed, self.pool) for p in group}


def draw_splits(size: WorldSize, rng: random.Random) -> Splits:
    seen: set[str] = set()
    problems: list[Problem] = []
    need = size.eval + size.validation + size.seed_pairs + size.pool
    while len(problems) < need:
        p = random_problem(rng)
        if p.prompt not in seen:
            seen.add(p.prompt)
            problems.append(p)
    cut = [size.eval, size.eval + size.validation, size.eval + size.validation + size.seed_pairs]
    return Splits(problems[: cut[0]], problems[cut[0] : cut[1]], problems[cut[1] : cut[2]], problems[cut[2] :])


def user(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def encode(tok, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """Token ids and labels for one SFT example: the loss is on the response (and its EOS) only."""
    p, r = prompt_ids(tok, user(prompt)), response_ids(tok, response)
    return p + r, [-100] * len(p) + r


def sft_batches(tok, size: WorldSize, rng: random.Random, held_out: set[str]) -> Iterator[dict[str, torch.Tensor]]:
    """An endless stream of fresh teacher-labelled batches, never touching a held-out prompt."""
    for step in itertools.count():
        frac = min(1.0, step / max(1, size.sft_steps - 1))
        p_correct = size.p_correct_start + (size.p_correct_end - size.p_correct_start) * frac
        rows = []
        while len(rows) < size.batch_size:
            p = random_problem(rng, rng.choices(DOMAINS, weights=SFT_DOMAIN_WEIGHTS)[0])
            if p.prompt not in held_out:
                rows.append(encode(tok, p.prompt, teacher_answer(p, rng, p_correct)))
        width = max(len(ids) for ids, _ in rows)
        pad = tok.pad_token_id
        yield {
            "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows]),
            "labels": torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows]),
            "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]),
        }


# --- model -------------------------------------------------------------------------------------


def train_sft(model, batches: Iterator[dict], size: WorldSize, report: Progress) -> list[float]:
    """Plain AdamW with linear warm-up and cosine decay; returns the loss curve."""
    opt = torch.optim.AdamW(model.parameters(), lr=size.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, size.sft_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, size.sft_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    for step in range(size.sft_steps):
        loss = model(**next(batches)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        report("sft", step + 1, size.sft_steps)
    model.eval()
    return losses


@torch.no_grad()
def sample(
    model,
    tok,
    prompts: list[str],
    n: int,
    max_new_tokens: int,
    temperature: float = TEMPERATURE,
    batch_prompts: int = 64,
) -> list[list[str]]:
    """n sampled answers per prompt (left-padded batches through model.generate)."""
    out: list[list[str]] = []
    for start in range(0, len(prompts), batch_prompts):
        chunk = [prompt_ids(tok, user(p)) for p in prompts[start : start + batch_prompts]]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(ids)) + ids for ids in chunk])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in chunk])
        gen = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        texts = tok.batch_decode(gen[:, width:], skip_special_tokens=True)
        out.extend(texts[i : i + n] for i in range(0, len(texts), n))
    return out


def make_pair(p: Problem, samples: list[str], rng: random.Random) -> tuple[str, str]:
    """(chosen, rejected): the first two samples whose gold differs, the higher one chosen. When every
    sample scores the same, the teacher supplies the other side (a mistake, or the right answer)."""
    samples = [s for s in samples if s.strip()]  # an empty answer is not a preference a file may hold
    if not samples:
        return p.answer, teacher_mistake(p, rng)
    golds = [gold_reward(p.prompt, s) for s in samples]
    for j in range(1, len(samples)):
        for i in range(j):
            if golds[i] != golds[j]:
                return (samples[i], samples[j]) if golds[i] > golds[j] else (samples[j], samples[i])
    if golds[0] == 1.0:
        return samples[0], teacher_mistake(p, rng)
    return p.answer, samples[0]


def pair_row(prompt: str, chosen: str, rejected: str) -> dict:
    """TRL's conversational preference format with an explicit prompt."""
    return {
        "prompt": user(prompt),
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# --- building ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _deterministic(seed: int, threads: int):
    """Fixed seed, thread count and deterministic kernels for the build; the caller's settings come back after."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_det)


class _Reporter:
    """Sends progress to the caller's callback, or draws a tqdm bar per stage when there is none."""

    def __init__(self, progress: Progress | None):
        self.progress, self.bars = progress, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)
            return
        from tqdm.auto import tqdm

        bar = self.bars.get(stage) or self.bars.setdefault(stage, tqdm(total=total, desc=f"demo world: {stage}"))
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _is_cached(root: Path, seed: int, size: WorldSize) -> bool:
    try:
        manifest = json.loads((root / "world.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("version") == VERSION and manifest.get("seed") == seed and manifest.get("size") == asdict(size)


def _write_world(tmp: Path, seed: int, size: WorldSize, report: Progress) -> None:
    started = time.perf_counter()
    rng = random.Random(seed)
    splits = draw_splits(size, rng)
    tok = char_tokenizer()
    model = random_llama(
        len(tok), hidden=size.hidden, layers=size.layers, heads=size.heads, max_positions=256, seed=seed
    )
    batches = sft_batches(tok, size, random.Random(seed + 1), splits.prompts())
    losses = train_sft(model, batches, size, report)

    labelled = splits.eval + splits.validation + splits.seed
    samples: list[list[str]] = []
    for start in range(0, len(labelled), 64):
        chunk = labelled[start : start + 64]
        samples += sample(model, tok, [p.prompt for p in chunk], size.samples_per_prompt, size.max_new_tokens)
        report("pairs", min(start + 64, len(labelled)), len(labelled))
    pair_rng = random.Random(seed + 2)
    rows = [pair_row(p.prompt, *make_pair(p, s, pair_rng)) for p, s in zip(labelled, samples)]
    n_eval, n_val = len(splits.eval), len(splits.validation)
    write_jsonl(tmp / "eval.jsonl", rows[:n_eval])
    write_jsonl(tmp / "validation.jsonl", rows[n_eval : n_eval + n_val])
    write_jsonl(tmp / "seed.jsonl", rows[n_eval + n_val :])
    write_jsonl(tmp / "pool.jsonl", [{"prompt": user(p.prompt)} for p in splits.pool])

    model.generation_config.update(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        do_sample=True,
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=0,
        max_new_tokens=size.max_new_tokens,
    )
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tok.save_pretrained(tmp / "model")

    eval_samples = samples[:n_eval]
    gold = [[gold_reward(p.prompt, s) for s in ss] for p, ss in zip(splits.eval, eval_samples)]
    by_domain = {d: [g for p, gs in zip(splits.eval, gold) if p.domain == d for g in gs] for d in DOMAINS}
    manifest = {
        "version": VERSION,
        "seed": seed,
        "task": "Short symbolic problems in four domains: sort digits, reverse a word, add two numbers, "
        "max of numbers. The SFT model imitates a teacher that is right half of the time and "
        "otherwise makes a plausible mistake, and hedges half of its answers ('maybe 480'); "
        "gold_reward scores any answer in [0, 1] and marks hedged answers down.",
        "domains": list(DOMAINS),
        "gold_reward": "engine.worlds.demo_task.gold_reward(prompt, response)",
        "counts": {"seed": len(splits.seed), "pool": len(splits.pool), "validation": n_val, "eval": n_eval},
        "size": asdict(size),
        "sft": {
            "final_loss": round(statistics.mean(losses[-20:]), 4),
            "temperature": TEMPERATURE,
            "samples_per_eval_prompt": size.samples_per_prompt,
            "gold_mean": round(statistics.mean(g for gs in gold for g in gs), 4),
            "exact_rate": round(statistics.mean(g == 1.0 for gs in gold for g in gs), 4),
            "hedged_rate": round(statistics.mean(split_hedge(s.strip())[0] for ss in eval_samples for s in ss), 4),
            "gold_by_domain": {d: round(statistics.mean(v), 4) if v else None for d, v in by_domain.items()},
            "pair_gold_differs": round(statistics.mean(gs[0] != gs[1] for gs in gold), 4),
        },
    }
    manifest["build_seconds"] = round(time.perf_counter() - started, 1)
    (tmp / "world.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _install(tmp: Path, root: Path) -> None:
    """Move a finished world into place; only an empty folder or an older world is ever replaced."""
    if root.exists():
        if any(root.iterdir()) and not (root / "world.json").exists():
            raise FileExistsError(f"{root} exists and is not a demo world; refusing to replace it")
        old = root.with_name(f".{root.name}.old-{os.getpid()}")
        root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(root)


def build_demo_world(
    out_dir: Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    force: bool = False,
    size: WorldSize | None = None,
) -> DemoWorld:
    """Build (or reuse) the demo world in out_dir. Cached: returns at once when the folder already
    holds this version, seed and size. Built in a temporary sibling folder and renamed into place,
    so an interrupted build never leaves half a world."""
    size = size or WorldSize()
    root = Path(out_dir).expanduser() if out_dir is not None else default_demo_dir(seed)
    if not force and _is_cached(root, seed, size):
        return DemoWorld.at(root)
    tmp = root.with_name(f".{root.name}.build-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    report = _Reporter(progress)
    try:
        with _deterministic(seed, size.threads):
            _write_world(tmp, seed, size, report)
        _install(tmp, root)
    finally:
        report.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return DemoWorld.at(root)


def fully_labelled_pairs(world: DemoWorld) -> Path:
    """For benchmarks only: the seed pairs plus a pair for every pool prompt made exactly as the seed's are
    (π_init samples, gold-labelled by make_pair) — the analogue of the whole labelled UltraFeedback set, of which
    the seed is 3.3%. Deterministic for the world, written once beside it as all_pairs.jsonl."""
    out = world.root / "all_pairs.jsonl"
    if out.is_file():
        return out
    manifest = world.manifest
    seed, size = manifest["seed"], WorldSize(**manifest["size"])
    pool = draw_splits(size, random.Random(seed)).pool
    with _deterministic(seed + 3, size.threads):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(world.model_dir).eval()
        tok = AutoTokenizer.from_pretrained(world.model_dir)
        samples = sample(model, tok, [p.prompt for p in pool], size.samples_per_prompt, size.max_new_tokens)
    pair_rng = random.Random(seed + 4)
    rows = [pair_row(p.prompt, *make_pair(p, s, pair_rng)) for p, s in zip(pool, samples)]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(world.seed_file.read_text() + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.rename(out)
    return out
