"""The SPA method, readable apart from the machinery that runs it:
scoring (the one log-prob kernel) and encoding (prompt and response ids); judges (the implicit-reward judge
and its formulas; gold) and baseline_judges (density ratio, reward model, LLM-as-judge); noise (de-coupled
noise detection); loss (the self-refinement loss); trainer (the DPOTrainer subclass that uses both);
generation and generation_vllm; models (loading, LoRA, π_init); evaluation. Knows nothing of jobs."""

from engine.method.judges import implicit_reward, judge_preference
from engine.method.loss import dpo_margin, self_refinement_loss, soft_labels
from engine.method.noise import extrapolated_logits, noise_flags
from engine.method.scoring import response_logps

__all__ = [
    "dpo_margin",
    "extrapolated_logits",
    "implicit_reward",
    "judge_preference",
    "noise_flags",
    "response_logps",
    "self_refinement_loss",
    "soft_labels",
]
