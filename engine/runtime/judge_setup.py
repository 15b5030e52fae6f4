"""Building the judge a run configuration names, with its models loaded: `judge_from_config` (the one factory: the
judge stage, the generate stage's best-of-N pair selector, judge-eval and the benchmarks call it), the baselines'
loader (density ratio, reward model, LLM-as-judge) and the pair selector. The judges themselves live in
engine.method; this is where a config, its world and the process's rank meet."""

from __future__ import annotations

from typing import Callable

from engine.config import RunConfig
from engine.method.baseline_judges import (
    EXTERNAL_KINDS,
    DensityRatioJudge,
    LLMJudge,
    RewardModelJudge,
    load_reward_model,
)
from engine.method.judges import GoldJudge, ImplicitRewardJudge, Judge
from engine.method.models import Policy
from engine.worlds import GoldReward, gold_reward_of, resolve_path

# the judges that pick best-of-N pairs while sampling; auto picks them with the implicit judge it starts from
SELECTING_KINDS = ("density_ratio", "implicit", "auto", "gold")


def _resolve(value: str, base_model_path: str) -> str:
    """'base' names the run's base model; a world's prefixed name its file; anything else is a path or hub id."""
    return base_model_path if value in ("", "base") else resolve_path(value)


def judge_from_config(
    cfg: RunConfig,
    base_model_path: str,
    load_policy: Callable[[], Policy] | None = None,
    gold: GoldReward | None = None,
) -> Judge:
    """The judge cfg.judge.kind names: SPA's implicit judge on π_{i-1} from `load_policy()` with cfg.judge.reference
    (also for auto, whose judge stage then relabels with the chosen variant: engine.runtime.auto_judge), the gold
    reward of the run's world (or `gold`), or an external judge with its models loaded."""
    kind = cfg.judge.kind
    if kind in ("implicit", "auto"):
        if load_policy is None:
            raise ValueError("the implicit judge needs π_{i-1} (load_policy)")
        return ImplicitRewardJudge(load_policy(), cfg.beta, cfg.judge.batch_size, reference=cfg.judge.reference)
    if kind == "gold":
        gold = gold if gold is not None else gold_reward_of(cfg)
        if gold is None:
            raise ValueError(
                "judge.kind gold: the run's world has no gold reward (its files name no world with one, "
                "such as demo: or text:)"
            )
        return GoldJudge(gold)
    return make_external_judge(cfg, base_model_path)


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
        return DensityRatioJudge(
            load_base_model(strong_path, device, dtype, remote),
            load_base_model(weak_path, device, dtype, remote),
            strong_tok,
            weak_tok,
            system_prompts=dict(j.system_prompts),
            batch_size=j.batch_size,
            seed=cfg.seed,
        )
    if j.kind == "reward_model":
        if not j.reward_model:
            raise ValueError("judge.kind reward_model needs judge.reward_model (a sequence-classification checkpoint)")
        model, tokenizer = load_reward_model(_resolve(j.reward_model, base_model_path), device, dtype, remote)
        return RewardModelJudge(model, tokenizer, batch_size=j.batch_size)
    if j.kind == "llm_judge":
        path = _resolve(j.judge_model, base_model_path)
        return LLMJudge(
            load_base_model(path, device, dtype, remote), load_tokenizer(path, remote), batch_size=j.batch_size
        )
    raise ValueError(f"judge.kind {j.kind!r} is not an external judge; external kinds are {', '.join(EXTERNAL_KINDS)}")


def pair_selector(
    cfg: RunConfig,
    base_model_path: str,
    load_policy: Callable[[], Policy] | None = None,
    gold: GoldReward | None = None,
) -> Judge | None:
    """The judge that picks each prompt's pair in the generate stage, only with samples_per_prompt > 2:
    the density ratio (chosen = highest r, rejected = a random other, as Dr.SoW does), SPA's implicit judge
    on π_{i-1} from `load_policy()` or the world's gold reward (both: chosen = highest, rejected = lowest). The
    judge stage then labels the stored pair with the same judge, so its label agrees."""
    if cfg.generation.samples_per_prompt <= 2 or cfg.judge.kind not in SELECTING_KINDS:
        return None
    return judge_from_config(cfg, base_model_path, load_policy, gold)
