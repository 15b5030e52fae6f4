"""After each round, on held-out prompts: self-judge accuracy, reward margin, response length, and (when a
gold reward exists) gold score and win rate against π_init. Everything lands in metrics."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.method import generation
from engine.method.judges import ImplicitRewardJudge
from engine.method.models import Policy
from storage.records import Example, Messages, Pair

Gold = Callable[[Messages, str], float]


@dataclass
class EvalSettings:
    beta: float
    max_prompts: int
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int
    seed: int


def sample_eval(
    policy: Policy, prompts: list[Messages], s: EvalSettings, use_init: bool = False, progress=None
) -> list[generation.Sample]:
    settings = generation.SamplingSettings(
        samples_per_prompt=1,
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        batch_size=s.batch_size,
        seed=s.seed,
    )
    return first_answers(policy, prompts, settings, use_init, progress)


def first_answers(
    policy: Policy,
    prompts: list[Messages],
    settings: generation.SamplingSettings,
    use_init: bool = False,
    progress=None,
) -> list[generation.Sample]:
    """One answer per prompt from π_i, or with `use_init` from π_init, under the same settings."""
    with policy.init_view() if use_init else contextlib.nullcontext(policy.model) as model:
        groups = generation.generate(model, policy.tokenizer, prompts, settings, progress)
    return [group[0] for group in groups]


def init_samples(policy: Policy, prompts: list[Messages], s: EvalSettings, cache: Path) -> list[str]:
    """π_init's answers to the eval prompts, sampled once per run and kept, so every round compares
    against the same baseline answers."""
    try:
        kept = json.loads(cache.read_text())
        if kept["prompts"] == prompts:  # a folder reused by another run holds other prompts: sample afresh
            return kept["texts"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    texts = [x.text for x in sample_eval(policy, prompts, s, use_init=True)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"prompts": prompts, "texts": texts}))
    return texts


def answer_rewards(
    policy: Policy, prompts: list[Messages], texts: list[str], beta: float, batch_size: int, reference: str = "init"
) -> list[float]:
    """The round's implicit judge's score of each single answer, r(x, y) = β·[logp(π_round, x, y) −
    logp(π_init, x, y)] (reference "none": β·logp(π_round, x, y)): the judge's view of an answer, beside gold's."""
    if not prompts:
        return []
    judge = ImplicitRewardJudge(policy, beta, batch_size, reference=reference)
    return judge.rewards(prompts, texts).tolist()


@dataclass
class AnswerScores:
    """The round's implicit judge's scores (answer_rewards) of its own eval answers and of π_init's."""

    judge: list[float]
    init_judge: list[float]
    beta: float
    reference: str


def save_answers(
    path: Path,
    prompts: list[Messages],
    texts: list[str],
    init_texts: list[str],
    gold: Gold | None,
    scores: AnswerScores | None = None,
    checks: list[list[dict]] | None = None,
    init_checks: list[list[dict]] | None = None,
) -> None:
    """A round's and π_init's answers to the eval prompts, with their gold scores where a gold exists, the
    round's judge scores and the world's checks of each answer where it has them (the text world's IFEval
    instructions), for the studio to show side by side (it never samples a model itself)."""
    record = {
        "prompts": prompts,
        "texts": texts,
        "init_texts": init_texts,
        "gold": [gold(p, t) for p, t in zip(prompts, texts)] if gold else None,
        "init_gold": [gold(p, t) for p, t in zip(prompts, init_texts)] if gold else None,
        "judge": scores.judge if scores else None,
        "init_judge": scores.init_judge if scores else None,
        "judge_beta": scores.beta if scores else None,
        "judge_reference": scores.reference if scores else None,
        "checks": checks,
        "init_checks": init_checks,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def judge_accuracy(
    policy: Policy, pairs: list[Example], beta: float, batch_size: int, reference: str = "init"
) -> dict[str, float]:
    """How often the round's implicit judge (π against π_init, or π alone with reference "none") prefers the
    labelled chosen answer."""
    if not pairs:
        return {}
    judge = ImplicitRewardJudge(policy, beta, batch_size, reference=reference)
    prefs = judge.judge([e.prompt for e in pairs], [e.chosen for e in pairs], [e.rejected for e in pairs])
    return {
        "eval/judge_accuracy": sum(p.score_a > p.score_b for p in prefs) / len(prefs),
        "eval/reward_margin": sum(p.score_a - p.score_b for p in prefs) / len(prefs),
    }


def gold_comparison(prompts: list[Messages], policy_texts: list[str], init_texts: list[str], gold: Gold) -> dict:
    g_pol = [gold(p, t) for p, t in zip(prompts, policy_texts)]
    g_ini = [gold(p, t) for p, t in zip(prompts, init_texts)]
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(g_pol, g_ini)]
    return {
        "eval/gold_score": sum(g_pol) / len(g_pol),
        "eval/init_gold_score": sum(g_ini) / len(g_ini),
        "eval/win_rate_vs_init": sum(wins) / len(wins),
    }


def _flagged(p: Pair) -> bool:
    """What the detector flagged, whether the flag acted (noisy) or fell in the α = 0 warm-up (warmup_flag)."""
    return bool(p.noisy) or bool(p.warmup_flag)


def round_pair_stats(pairs: list[Pair]) -> dict[str, float]:
    """What the self-judge did this round, measured against gold where the demo world provides it.
    `chose_less_likely` needs no gold: the share of pairs where the judge chose the answer π_init finds less
    likely. A policy that drifts flat raises its ratio most on answers π_init thought unlikely, so a value
    climbing over rounds is the implicit reward rewarding the drift; `gold_prefers_less_likely` (demo world)
    says whether that direction is right there."""
    stats: dict[str, float] = {"round/pairs": len(pairs)}
    if not pairs:
        return stats
    flagged = [p for p in pairs if p.noisy is not None]
    if flagged:
        stats["round/flagged_fraction"] = sum(_flagged(p) for p in flagged) / len(flagged)
    stats["round/human_labels"] = sum(p.label_source == "human" for p in pairs)
    conf = [p.confidence for p in pairs if p.confidence is not None]
    if conf:
        stats["round/mean_confidence"] = sum(conf) / len(conf)
    scored = [p for p in pairs if p.judge_label in ("a", "b") and _init_ordered(p)]
    if scored:
        stats["round/chose_less_likely"] = sum(
            (p.judge_label == "a") == (p.logp_init_a < p.logp_init_b) for p in scored
        ) / len(scored)
    decided = [
        p
        for p in pairs
        if p.gold_a is not None and p.gold_b is not None and p.gold_a != p.gold_b and p.judge_label in ("a", "b")
    ]
    if decided:
        right = [(p.judge_label == "a") == (p.gold_a > p.gold_b) for p in decided]
        stats["round/self_label_accuracy"] = sum(right) / len(right)
        by_likelihood = [p for p in decided if _init_ordered(p)]
        if by_likelihood:
            stats["round/gold_prefers_less_likely"] = sum(
                (p.gold_a > p.gold_b) == (p.logp_init_a < p.logp_init_b) for p in by_likelihood
            ) / len(by_likelihood)
        noisy = [p for p in decided if _flagged(p)]
        if noisy:
            stats["round/flagged_label_accuracy"] = sum(
                (p.judge_label == "a") == (p.gold_a > p.gold_b) for p in noisy
            ) / len(noisy)
    return stats


def _init_ordered(p: Pair) -> bool:
    """π_init scored both answers and likes one more."""
    return p.logp_init_a is not None and p.logp_init_b is not None and p.logp_init_a != p.logp_init_b
