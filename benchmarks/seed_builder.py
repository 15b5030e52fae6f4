"""How long a person needs to build a seed from prompts alone, on the text world (SmolLM2-135M-Instruct, IFEval gold).

    python benchmarks/seed_builder.py [--prompts 20] [--samples 4] [--out benchmarks/results/seed_builder.md]

The studio's own path, minus the browser: a project whose seed file holds the text world's first seed prompts only
(no answers), the `seed-answers` job's stage sampling N answers per prompt from the model with the run
configuration's generation settings (configs/text_demo.yaml), then a simulated person who ranks each prompt in the
seed view by gold (IFEval's checkers): the best and the worst answer (two key presses), or "all equal" (one) when
gold tells them apart nowhere. It reports the seconds of sampling per prompt, the key presses per ranked prompt, and
how many prompts give a pair from N answers against from the first two alone (the world's two-sample seed pairs)."""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from engine.data.importers import load_examples
from engine.runtime.jobs import SEED_ANSWERS
from engine.runtime.seed_answers import SeedAnswersRequest, run_seed_answers
from engine.worlds import ifeval_tasks as it
from engine.worlds.smollm2 import model_dir
from engine.worlds.text_world import TextWorldSize, draw_splits
from storage import Job, Project, Store

ROOT = Path(__file__).resolve().parents[1]
KEYS_TO_RANK = 2  # the seed view: one key marks the best answer, a second the worst (and submits)
KEYS_FOR_EQUAL = 1


def seed_tasks(prompts: int = 20) -> list[it.Task]:
    """The text world's first seed prompts (the default world, seed 0), in draw order: the prompts a person of the
    text world builds a seed from, here and in benchmarks/text_table.py's seed_builder row."""
    return draw_splits(TextWorldSize(), seed=0).seed[:prompts]


def seed_prompts_file(folder: Path, tasks: list[it.Task]) -> Path:
    path = folder / "seed_prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": t.prompt}) + "\n" for t in tasks))
    return path


def gold_decision(task: it.Task, texts: list[str]) -> tuple[int, int] | None:
    """(best, worst) answer indices by gold reward, or None when gold rewards every answer alike."""
    rewards = [it.score(task, t).reward for t in texts]
    best = max(range(len(texts)), key=lambda k: (rewards[k], -k))
    worst = min(range(len(texts)), key=lambda k: (rewards[k], k))
    return None if rewards[best] == rewards[worst] else (best, worst)


def prompts_project(store: Store, name: str, model: str, prompts_file: Path, cfg: dict) -> Project:
    """A project started from prompts alone: the prompts-only seed file imported as the Project tab imports it, and
    cfg (a run configuration's YAML mapping) saved as its configuration, where the seed-answers job reads its
    model, generation settings and seed."""
    project = store.ensure_project(name, model=model)
    store.add_examples(project.id, load_examples(str(prompts_file), "seed").examples)
    store.save_config(project.id, "run", yaml.safe_dump(cfg, sort_keys=False))
    return project


def sample_answers(store: Store, project: Project, samples: int, say=lambda m: print(m, flush=True)) -> float:
    """The seed-answers job's one stage, as the worker's stage process runs it, with the project's latest saved
    configuration (its model, generation settings and seed); returns the seconds it took."""
    req = SeedAnswersRequest(project=project.name, samples=samples)
    job_id = store.enqueue(Job(project_id=project.id, kind=SEED_ANSWERS, config_yaml=yaml.safe_dump(asdict(req))))
    started = time.perf_counter()
    run_seed_answers(store, store.job(job_id), req, "sample", lambda *a, **k: None, say)
    store.finish_job(job_id, "done")
    return time.perf_counter() - started


@dataclass
class Ranking:
    """What the simulated person did, and how far apart gold puts the answers they paired."""

    keys: int = 0
    ranked: int = 0
    equal: int = 0
    pairs_from_two: int = 0
    gaps_n: list[float] = field(default_factory=list)
    gaps_two: list[float] = field(default_factory=list)


def rank_by_gold(store: Store, project_id: int, tasks: list[it.Task]) -> Ranking:
    """The simulated person in the seed view, one prompt at a time: the best and the worst answer by gold (two key
    presses), or "all equal" (one) when gold tells them apart nowhere."""
    by_prompt = {t.prompt: t for t in tasks}
    out = Ranking()
    for example in store.seed_prompts(project_id):
        task = by_prompt[example.prompt[-1]["content"]]
        answers = store.seed_answers(example.id)
        texts = [a.text for a in answers]
        decision = gold_decision(task, texts)
        if decision is None:
            store.mark_seed(project_id, example.id, "equal", "bench")
            out.keys, out.equal = out.keys + KEYS_FOR_EQUAL, out.equal + 1
        else:
            best, worst = decision
            store.rank_seed(project_id, example.id, answers[best].id, answers[worst].id, "bench")
            out.keys, out.ranked = out.keys + KEYS_TO_RANK, out.ranked + 1
            out.gaps_n.append(it.score(task, texts[best]).reward - it.score(task, texts[worst]).reward)
        two = gold_decision(task, texts[:2])
        if two is not None:
            out.pairs_from_two += 1
            out.gaps_two.append(abs(it.score(task, texts[0]).reward - it.score(task, texts[1]).reward))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=20, help="seed prompts (the text world's first ones)")
    ap.add_argument("--samples", type=int, default=4, help="answers per prompt")
    ap.add_argument("--model", default=str(model_dir()), help="the model folder (launch.py fetch-model)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "text_demo.yaml"), help="generation settings")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed_builder.md"))
    args = ap.parse_args()

    tasks = seed_tasks(args.prompts)
    folder = Path(tempfile.mkdtemp(prefix="seed_builder_"))
    store = Store(folder / "seed.db")
    cfg = yaml.safe_load(Path(args.config).read_text())
    cfg["model"] = args.model
    project = prompts_project(store, "seed-bench", args.model, seed_prompts_file(folder, tasks), cfg)
    sampling_s = sample_answers(store, project, args.samples)
    r = rank_by_gold(store, project.id, tasks)
    progress = store.seed_progress(project.id)
    answers_n = sum(len(store.seed_answers(e.id)) for e in store.seed_prompts(project.id))
    n = len(tasks)
    command = shlex.join(["python", "benchmarks/seed_builder.py", *sys.argv[1:]])
    lines = [
        "# Building a seed from prompts alone (`benchmarks/seed_builder.py`)",
        "",
        f"Text world seed prompts 1–{n} (world seed 0), {args.samples} answers each from SmolLM2-135M-Instruct with "
        f"configs/text_demo.yaml's generation settings, float32 on {torch.get_num_threads()} CPU threads, "
        f"{time.strftime('%Y-%m-%d')}; `{command}`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| sampling, whole seed ({answers_n} answers) | {sampling_s:.0f} s |",
        f"| sampling per prompt | {sampling_s / n:.1f} s |",
        f"| prompts ranked (gold tells best from worst) | {r.ranked} of {n} |",
        f"| prompts marked all equal | {r.equal} of {n} |",
        f"| key presses in all | {r.keys} ({r.keys / max(r.ranked, 1):.2f} per ranked prompt, all-equal ones "
        "included) |",
        f"| seed pairs from {args.samples} answers (best vs worst) | {progress.seed_pairs} |",
        f"| seed pairs from the first 2 answers (the world's way) | {r.pairs_from_two} |",
        f"| mean gold gap of a pair, best vs worst of {args.samples} | "
        f"{statistics.mean(r.gaps_n) if r.gaps_n else float('nan'):.3f} |",
        f"| mean gold gap of a pair, first 2 answers | "
        f"{statistics.mean(r.gaps_two) if r.gaps_two else float('nan'):.3f} |",
        "",
        "The person's part is the key presses: two per ranked prompt (best, then worst), one for all equal. Gold "
        "stands in for the person's reading; a person reads four answers per prompt where the two-sample seed "
        "asks for two.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
