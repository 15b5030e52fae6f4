"""Building the judge a run configuration names, with its models loaded: the baselines' factory
(density ratio, reward model, LLM-as-judge) and the best-of-N pair selector of the generate stage. The judges
themselves live in engine.method; this is where a config, the demo world's paths and the process's rank meet."""
from __future__ import annotations

from typing import Callable

from engine.method.baseline_judges import (
    EXTERNAL_KINDS,
    DensityRatioJudge,
    LLMJudge,
    RewardModelJudge,
    load_reward_model,
)
from engine.method.judges import GoldJudge, ImplicitRewardJudge, Judge
from storage.records import Messages


def _resolve(value: str, base_model_path: str) -> str:
    """'base' names the run's base model; 'demo:NAME' a file of the demo world; anything else is a path or hub id."""
    from engine.config import DEMO_PREFIX, resolve_path
    if value in ("", "base"):
        return base_model_path
    if value.startswith(DEMO_PREFIX):
        from engine.worlds.demo_world import default_demo_dir
        return resolve_path(value, default_demo_dir())
    return value


def make_external_judge(cfg, base_model_path: str) -> Judge:
    """The judge cfg.judge.kind names (density_ratio | reward_model | llm_judge), its models loaded per
    cfg.judge on cfg.device. 'base' (or an empty judge_model) means the run's base model."""
    from engine.method.models import load_base_model, load_tokenizer, pick_device, pick_dtype
    from engine.runtime.distributed import Ranks

    j = cfg.judge
    device = pick_device(cfg.device, Ranks.from_env().local_rank)
    dtype = pick_dtype(device, cfg.dtype)
    remote = cfg.trust_remote_code
    if j.kind == "density_ratio":
        strong_path, weak_path = _resolve(j.strong_model, base_model_path), _resolve(j.weak_model, base_model_path)
        strong_tok = load_tokenizer(strong_path, remote)
        weak_tok = strong_tok if weak_path == strong_path else load_tokenizer(weak_path, remote)
        return DensityRatioJudge(load_base_model(strong_path, device, dtype, remote),
                                 load_base_model(weak_path, device, dtype, remote), strong_tok, weak_tok,
                                 system_prompts=dict(j.system_prompts), batch_size=j.batch_size, seed=cfg.seed)
    if j.kind == "reward_model":
        if not j.reward_model:
            raise ValueError("judge.kind reward_model needs judge.reward_model (a sequence-classification checkpoint)")
        model, tokenizer = load_reward_model(_resolve(j.reward_model, base_model_path), device, dtype, remote)
        return RewardModelJudge(model, tokenizer, batch_size=j.batch_size)
    if j.kind == "llm_judge":
        path = _resolve(j.judge_model, base_model_path)
        return LLMJudge(load_base_model(path, device, dtype, remote), load_tokenizer(path, remote),
                        batch_size=j.batch_size)
    raise ValueError(f"judge.kind {j.kind!r} is not an external judge; external kinds are {', '.join(EXTERNAL_KINDS)}")


def pair_selector(cfg, base_model_path: str, load_policy: Callable[[], object] | None = None,
                  gold: Callable[[Messages, str], float] | None = None):
    """The judge that picks each prompt's pair in the generate stage, only with samples_per_prompt > 2:
    the density ratio (chosen = highest r, rejected = a random other, as Dr.SoW does), SPA's implicit judge
    on π_{i-1} from `load_policy()` or the demo world's gold reward (both: chosen = highest, rejected =
    lowest). The judge stage then labels the stored pair with the same judge, so its label agrees."""
    if cfg.generation.samples_per_prompt <= 2:
        return None
    if cfg.judge.kind == "density_ratio":
        return make_external_judge(cfg, base_model_path)
    if cfg.judge.kind == "implicit":
        if load_policy is None:
            raise ValueError("best-of-N under the implicit judge needs π_{i-1} (load_policy)")
        return ImplicitRewardJudge(load_policy(), cfg.beta, cfg.judge.batch_size, reference=cfg.judge.reference)
    if cfg.judge.kind == "gold":
        if gold is None:
            raise ValueError("judge.kind gold exists only in the demo world")
        return GoldJudge(gold)
    return None
