"""IFEval's metrics for a round's model on the text world's held-out splits, with greedy decoding as IFEval
reports them: prompt-level strict and loose, instruction-level strict and loose; plus the gold reward, the win
rate of the model's answer over π_init's (SmolLM2 itself) by gold, and the share of answers cut at
max_new_tokens (a cut answer is scored as it stands: the checkers see the text that was generated)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from engine.method import generation
from engine.method.evaluation import EvalSettings, first_answers
from engine.method.models import Policy
from engine.worlds import ifeval_tasks as it
from engine.worlds.text_review import answer_checks
from engine.worlds.text_world import TextWorld
from engine.worlds.world_eval import HeldOutAnswers, WorldEval

SPLITS = ("eval", "eval2")


def greedy_answers(
    policy: Policy,
    tasks: list[it.Task],
    s: EvalSettings,
    use_init: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[generation.Sample]:
    settings = generation.SamplingSettings(
        samples_per_prompt=1, temperature=0.0, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, seed=s.seed
    )
    return first_answers(policy, [t.messages() for t in tasks], settings, use_init, progress)


def init_answers(
    policy: Policy,
    tasks: list[it.Task],
    s: EvalSettings,
    cache: Path,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """π_init's greedy answers, generated once per run folder and reused by every round."""
    key = {"prompts": [t.prompt for t in tasks], "max_new_tokens": s.max_new_tokens}
    try:
        kept = json.loads(cache.read_text())
        if kept["key"] == key:
            return kept["texts"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    texts = [x.text for x in greedy_answers(policy, tasks, s, use_init=True, progress=progress)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "texts": texts}))
    return texts


def win_rate(scores: list[it.GoldScore], init_scores: list[it.GoldScore]) -> float:
    """The share of prompts whose answer has the higher gold reward than π_init's, ties counting half."""
    wins = [1.0 if a.reward > b.reward else 0.5 if a.reward == b.reward else 0.0 for a, b in zip(scores, init_scores)]
    return sum(wins) / len(wins)


def split_metrics(
    tasks: list[it.Task], answers: list[generation.Sample], init_texts: list[str], prefix: str
) -> dict[str, float]:
    scores = [it.score(t, a.text) for t, a in zip(tasks, answers)]
    init_scores = [it.score(t, text) for t, text in zip(tasks, init_texts)]
    values = it.ifeval_metrics(scores).as_dict(prefix)
    values.update(it.ifeval_metrics(init_scores).as_dict(f"{prefix}/init"))
    values[f"{prefix}/gold_reward"] = sum(x.reward for x in scores) / len(scores)
    values[f"{prefix}/win_rate_vs_init"] = win_rate(scores, init_scores)
    values[f"{prefix}/cut_fraction"] = sum(not a.finished for a in answers) / len(answers)
    return values


def held_out(tasks: list[it.Task], texts: list[str], init_texts: list[str]) -> HeldOutAnswers:
    """The answers of both models with each answer's instruction checks, as the checkers of the gold see them."""

    def checks(texts_: list[str]) -> list[list[dict]]:
        return [[asdict(c) for c in answer_checks(t, text)] for t, text in zip(tasks, texts_)]

    return HeldOutAnswers([t.messages() for t in tasks], texts, init_texts, checks(texts), checks(init_texts))


def text_eval(
    policy: Policy, root: Path, s: EvalSettings, out_dir: Path, progress: Callable[[int, int], None] | None = None
) -> WorldEval:
    """Metrics named text/<split>/...; eval takes s.max_prompts prompts, eval2 half as many; and the eval split's
    answers with their checks. Progress counts the answers generated (the model's, then π_init's where they are
    not cached yet)."""
    world = TextWorld.at(root)
    out = WorldEval()
    splits = [
        (split, world.eval_tasks(split)[:limit])
        for split, limit in zip(SPLITS, (s.max_prompts, max(1, s.max_prompts // 2)))
    ]
    total, done = 2 * sum(len(tasks) for _, tasks in splits), 0

    def step(base: int):
        return lambda n, _: progress(base + n, total) if progress else None

    for split, tasks in splits:
        answers = greedy_answers(policy, tasks, s, progress=step(done))
        done += len(tasks)
        baseline = init_answers(
            policy, tasks, replace(s, temperature=0.0), out_dir / f"text_{split}_init.json", step(done)
        )
        done += len(tasks)
        out.metrics.update(split_metrics(tasks, answers, baseline, f"text/{split}"))
        if split == "eval":
            out.answers = held_out(tasks, [a.text for a in answers], baseline)
    return out
