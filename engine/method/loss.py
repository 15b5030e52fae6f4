"""The self-refinement loss (DESIGN.md section 1): the DPO margin h, the soft labels ỹ, and the per-pair loss
L = −ỹ·log σ(β·h) − (1 − ỹ)·log σ(−β·h). Pure functions on tensors; the trainer calls them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_margin(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor
) -> torch.Tensor:
    """h = [logp_π(y_w) − logp_ref(y_w)] − [logp_π(y_l) − logp_ref(y_l)]: the usual DPO margin, before β."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def in_warmup(step: int, total_steps: int, warmup_fraction: float) -> bool:
    """Whether an optimiser step falls in the round's warm-up (the first warmup_fraction of its steps), where
    α = 0: a pair flagged then keeps ỹ = 1, so its flag changed nothing."""
    return step < warmup_fraction * total_steps


def soft_labels(
    flags: torch.Tensor, trusted: torch.Tensor, alpha: float, step: int, total_steps: int, warmup_fraction: float
) -> torch.Tensor:
    """ỹ = 1 − α_eff · flag, with α_eff = 0 while step < warmup_fraction · total_steps and α after. Trusted pairs
    (human/gold labels) always get ỹ = 1. Labels are smoothed, never flipped."""
    alpha_eff = 0.0 if in_warmup(step, total_steps, warmup_fraction) else alpha
    flagged = flags.bool() & ~trusted.bool()
    return 1.0 - alpha_eff * flagged.float()


def self_refinement_loss(h: torch.Tensor, beta: float, soft_label: torch.Tensor | float) -> torch.Tensor:
    """Per-pair L = −ỹ·log σ(β·h) − (1 − ỹ)·log σ(−β·h) (log σ via logsigmoid for stability).
    With ỹ = 1 it is plain sigmoid DPO."""
    logits = beta * h
    return -soft_label * F.logsigmoid(logits) - (1 - soft_label) * F.logsigmoid(-logits)
