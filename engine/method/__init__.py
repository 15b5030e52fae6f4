"""The SPA method, readable apart from the machinery that runs it:
scoring (the one log-prob kernel) and encoding (prompt and response ids); judges (the implicit-reward judge
and its formulas; gold) and baseline_judges (density ratio, reward model, LLM-as-judge); noise (de-coupled
noise detection); loss (the self-refinement loss); trainer (the DPOTrainer subclass that uses both);
generation and generation_vllm; models (loading, LoRA, π_init); evaluation; agreement (a judge against a person's
labels). Knows nothing of jobs. The names below are imported on first use, so a torch-free module of the package
(agreement, which the studio reads) loads without torch."""

from __future__ import annotations

import importlib

_HOMES = {
    "implicit_reward": "judges",
    "judge_preference": "judges",
    "dpo_margin": "loss",
    "self_refinement_loss": "loss",
    "soft_labels": "loss",
    "extrapolated_logits": "noise",
    "noise_flags": "noise",
    "response_logps": "scoring",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
