"""The text world: SmolLM2-135M-Instruct with IFEval gold (DESIGN.md §4b), built once per seed and cached.

Splits, all disjoint in prompt text:
- seed: gold-labelled pairs of two SmolLM2 samples (temperature 0.7, ≤ 128 new tokens) of one prompt, kept
  where the gold rewards differ (the higher is chosen); prompts are drawn until `seed_pairs` pairs exist.
- pool: prompts only. seed and pool come from the training tasks and the training instruction types.
- eval: held-out tasks (topic × form combinations never in seed or pool), training instruction types.
- eval2: held-out tasks whose instructions include at least one held-out type (ifeval_tasks.HELD_OUT_TYPES).
- few (draw_few_split, not stored in the world): 240 prompts of one or two instructions each, of tasks on topics
  no other split has; benchmarks/text_reeval.py scores saved models on it.
tasks.jsonl holds every prompt's instructions: the gold reward of any answer to any prompt of the world.
Samples are written chunk by chunk into the build folder, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from engine.worlds import ifeval_tasks as it
from engine.worlds.smollm2 import fetch

VERSION = 1
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TextWorldSize:
    seed_pairs: int = 20
    max_seed_prompts: int = 160  # stop drawing seed prompts here even when fewer pairs differ
    pool: int = 800
    eval: int = 100
    eval2: int = 60
    eval_task_fraction: float = 0.15  # of the 400 tasks, held out for eval and eval2
    max_new_tokens: int = 128
    temperature: float = 0.7
    batch_size: int = 64  # sequences per generate call: on a CPU a wider batch costs little more per step
    chunk_prompts: int = 32  # seed candidates sampled per chunk (two samples each)

    @classmethod
    def mini(cls) -> "TextWorldSize":
        """For the end-to-end test: a handful of everything, short answers."""
        return cls(
            seed_pairs=2,
            max_seed_prompts=24,
            pool=8,
            eval=4,
            eval2=2,
            max_new_tokens=32,
            batch_size=16,
            chunk_prompts=8,
        )


@dataclass
class TextWorld:
    root: Path
    model_dir: Path
    tasks_file: Path
    seed_file: Path
    pool_file: Path
    eval_file: Path
    eval2_file: Path

    @classmethod
    def at(cls, root: Path) -> "TextWorld":
        return cls(
            root=root,
            model_dir=root / "model",
            tasks_file=root / "tasks.jsonl",
            seed_file=root / "seed.jsonl",
            pool_file=root / "pool.jsonl",
            eval_file=root / "eval.jsonl",
            eval2_file=root / "eval2.jsonl",
        )

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "world.json").read_text())

    def task_book(self) -> it.TaskBook:
        return it.TaskBook.load(self.tasks_file)

    def eval_tasks(self, split: str = "eval") -> list[it.Task]:
        book = self.task_book()
        path = self.eval_file if split == "eval" else self.eval2_file
        return [book.by_prompt[row["prompt"][-1]["content"]] for row in _read_jsonl(path)]


def default_text_dir(seed: int = 0) -> Path:
    env = os.environ.get("SPA_TEXT_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "spa-studio" / f"text-world-v{VERSION}-seed{seed}"


@dataclass
class Splits:
    seed: list[it.Task]  # candidates, in draw order; the build takes as many as it needs
    pool: list[it.Task]
    eval: list[it.Task]
    eval2: list[it.Task]


def draw_splits(size: TextWorldSize, seed: int) -> Splits:
    """Deterministic for a seed: tasks split first, then prompts drawn without repeating a prompt text."""
    rng = random.Random(seed)
    tasks = it.all_tasks()
    rng.shuffle(tasks)
    n_held = round(size.eval_task_fraction * len(tasks))
    held, train = tasks[:n_held], tasks[n_held:]
    seen: set[str] = set()

    def draw(n: int, pool: list[str], types: tuple[str, ...], must: tuple[str, ...] = ()) -> list[it.Task]:
        out: list[it.Task] = []
        for _ in range(50 * n):
            if len(out) == n:
                break
            task = it.draw_task(rng.choice(pool), types, rng, must)
            if task.prompt not in seen:
                seen.add(task.prompt)
                out.append(task)
        if len(out) < n:
            raise ValueError(f"could only draw {len(out)} of {n} distinct prompts")
        return out

    eval_tasks = draw(size.eval, held, it.TRAIN_TYPES)
    eval2_tasks = draw(size.eval2, held, it.TRAIN_TYPES, it.HELD_OUT_TYPES)
    seed_tasks = draw(size.max_seed_prompts, train, it.TRAIN_TYPES)
    pool_tasks = draw(size.pool, train, it.TRAIN_TYPES)
    return Splits(seed_tasks, pool_tasks, eval_tasks, eval2_tasks)


def draw_few_split(seed: int = 0, n: int = 240) -> list[it.Task]:
    """The held-out split of one or two instructions a prompt (half each, any of the 21 types): n prompts, each of a
    different task of ifeval_tasks.FEW_TOPICS, topics no other split draws from, so it shares no task and no prompt
    with seed, pool, eval or eval2. Deterministic for a seed; built on demand, outside the world's files, so adding
    it changed no cached world."""
    rng = random.Random(f"few/{seed}")
    tasks = it.all_tasks(it.FEW_TOPICS)
    if n > len(tasks):
        raise ValueError(f"the split of one or two instructions has {len(tasks)} tasks, fewer than {n} prompts")
    rng.shuffle(tasks)
    return [it.draw_task(task, it.TYPES, rng, counts=it.FEW_INSTRUCTIONS) for task in tasks[:n]]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def pair_row(task: it.Task, chosen: str, rejected: str) -> dict:
    return {
        "prompt": task.messages(),
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _sample_seed_chunks(
    tmp: Path, model_dir: Path, candidates: list[it.Task], size: TextWorldSize, seed: int, report: Progress
) -> list[tuple[it.Task, list[str]]]:
    """Two samples per seed candidate, chunk by chunk, until `seed_pairs` pairs differ in gold. Each chunk is
    appended to samples.jsonl, so a restarted build skips the chunks it already has."""
    import torch

    from engine.method import generation, models

    log = tmp / "samples.jsonl"
    done = _read_jsonl(log) if log.exists() else []
    sampled = [(candidates[i], row["texts"]) for i, row in enumerate(done)]
    model = tokenizer = None
    chunk = size.chunk_prompts
    while _differing(sampled) < size.seed_pairs and len(sampled) < len(candidates):
        if model is None:
            tokenizer = models.load_tokenizer(str(model_dir))
            model = models.load_base_model(str(model_dir), torch.device("cpu"), torch.float32)
        batch = candidates[len(sampled) : len(sampled) + chunk]
        settings = generation.SamplingSettings(
            samples_per_prompt=2,
            temperature=size.temperature,
            top_p=1.0,
            max_new_tokens=size.max_new_tokens,
            batch_size=size.batch_size,
            seed=seed * 1_000_003 + len(sampled),
        )
        groups = generation.generate(model, tokenizer, [t.messages() for t in batch], settings)
        with open(log, "a") as f:
            for task, group in zip(batch, groups):
                texts = [s.text for s in group]
                sampled.append((task, texts))
                f.write(json.dumps({"prompt": task.prompt, "texts": texts}) + "\n")
        report("seed samples", min(_differing(sampled), size.seed_pairs), size.seed_pairs)
    return sampled


def _differing(sampled: list[tuple[it.Task, list[str]]]) -> int:
    return sum(1 for task, texts in sampled if _pair(task, texts) is not None)


def _pair(task: it.Task, texts: list[str]) -> tuple[str, str] | None:
    """(chosen, rejected) when both answers are non-empty and their gold differs."""
    return best_vs_worst(task, texts) if all(t.strip() for t in texts[:2]) else None


def best_vs_worst(task: it.Task, texts: list[str]) -> tuple[str, str] | None:
    """(best, worst) by gold among the non-empty answers (the first of equals), or None when their gold is all equal:
    the world's seed pair with two answers, the §4b anchor's with more."""
    scored = [(it.score(task, t).reward, t) for t in texts if t.strip()]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda s: s[0])
    worst = min(scored, key=lambda s: s[0])
    return None if best[0] == worst[0] else (best[1], worst[1])


def _is_cached(root: Path, seed: int, size: TextWorldSize | None) -> bool:
    """A finished world of this version and seed (and size, unless None) is at root."""
    try:
        manifest = json.loads((root / "world.json").read_text())
    except (OSError, ValueError):
        return False
    same_size = size is None or manifest.get("size") == asdict(size)
    return manifest.get("version") == VERSION and manifest.get("seed") == seed and same_size


def build_text_world(
    out_dir: Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    force: bool = False,
    size: TextWorldSize | None = None,
) -> TextWorld:
    """Build (or reuse) the text world. Fetches SmolLM2 into the model cache first (`fetch-model`). size None
    reuses whatever size is cached at the folder (a run's prepare stage), and builds the default size otherwise."""
    root = Path(out_dir) if out_dir else default_text_dir(seed)
    if size is None and not force and _is_cached(root, seed, None):
        return TextWorld.at(root)
    size = size or TextWorldSize()
    if _is_cached(root, seed, size) and not force:
        return TextWorld.at(root)
    report = progress or (lambda stage, done, total: print(f"text world: {stage} {done}/{total}", flush=True))
    started = time.perf_counter()
    report("model", 0, 1)
    model = fetch(progress=lambda message: print(message, flush=True))
    report("model", 1, 1)
    tmp = root.with_name(f".{root.name}.building")
    if tmp.exists() and (force or not _same_draw(tmp, seed, size)):
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "draw.json").write_text(json.dumps(_draw_key(seed, size)))
    splits = draw_splits(size, seed)
    sampled = _sample_seed_chunks(tmp, model.path, splits.seed, size, seed, report)
    pairs = [(task, pair) for task, texts in sampled if (pair := _pair(task, texts)) is not None][: size.seed_pairs]
    used = [task for task, _ in sampled]
    it.write_tasks(tmp / "tasks.jsonl", used + splits.pool + splits.eval + splits.eval2)
    _write_jsonl(tmp / "seed.jsonl", [pair_row(task, *pair) for task, pair in pairs])
    for name, tasks in (("pool", splits.pool), ("eval", splits.eval), ("eval2", splits.eval2)):
        _write_jsonl(tmp / f"{name}.jsonl", [{"prompt": t.messages()} for t in tasks])
    gold = [it.score(task, text).reward for task, texts in sampled for text in texts]
    manifest = {
        "version": VERSION,
        "seed": seed,
        "size": asdict(size),
        "model": str(model.path),
        "model_checksums": model.checksums,
        "counts": {
            "seed_pairs": len(pairs),
            "seed_prompts_sampled": len(sampled),
            "pool": len(splits.pool),
            "eval": len(splits.eval),
            "eval2": len(splits.eval2),
        },
        "held_out_types": list(it.HELD_OUT_TYPES),
        "train_types": list(it.TRAIN_TYPES),
        "seed_samples_gold_mean": round(statistics.mean(gold), 4) if gold else None,
        "seed_prompt_pairs_differ": round(_differing(sampled) / max(1, len(sampled)), 4),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (tmp / "world.json").write_text(json.dumps(manifest, indent=2) + "\n")
    link = tmp / "model"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model.path.resolve(), target_is_directory=True)
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return TextWorld.at(root)


def _same_draw(tmp: Path, seed: int, size: TextWorldSize) -> bool:
    try:
        draw = json.loads((tmp / "draw.json").read_text())
    except (OSError, ValueError):
        return False
    return draw == _draw_key(seed, size)


def _draw_key(seed: int, size: TextWorldSize) -> dict:
    """What the prompts and samples depend on: a build asking for more or fewer seed pairs reuses the samples."""
    return {"seed": seed, "size": {k: v for k, v in asdict(size).items() if k != "seed_pairs"}, "version": VERSION}
