"""The SPA method's formulas (DESIGN.md section 1), each in one place, as pure functions on tensors.
The judge, the trainer and the evaluation all call these, so a formula changes in exactly one spot."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def implicit_reward(logp_policy: torch.Tensor, logp_init: torch.Tensor, beta: float) -> torch.Tensor:
    """r(x, y) = β · [logp(π, x, y) − logp(π_init, x, y)]: DPO's implicit reward, the SPA judge's score."""
    return beta * (logp_policy - logp_init)


def judge_preference(reward_a: torch.Tensor, reward_b: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chosen = higher r (a tie goes to 'a'); margin = r_chosen − r_rejected ≥ 0; confidence = σ(margin) ∈ [0.5, 1].
    Returns (a_preferred, margin, confidence)."""
    a_preferred = reward_a >= reward_b
    margin = (reward_a - reward_b).abs()
    return a_preferred, margin, torch.sigmoid(margin)


def dpo_margin(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
               ref_rejected: torch.Tensor) -> torch.Tensor:
    """h = [logp_π(y_w) − logp_ref(y_w)] − [logp_π(y_l) − logp_ref(y_l)]: the usual DPO margin, before β."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def extrapolated_logits(logits_policy: torch.Tensor, logits_ref: torch.Tensor, lam: float) -> torch.Tensor:
    """logits_ḡ = (1 + λ)·logits_θ − λ·logits_ref: the policy pushed further from its reference (λ = 0: the policy)."""
    return (1 + lam) * logits_policy - lam * logits_ref


def response_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed response log-probs, logp(π, x, y) = Σ_t mask[t] · log softmax(logits[t − 1])[labels[t]].

    Causal-LM alignment: `logits[..., t, :]` is the model's output at position t, so it predicts `labels[..., t + 1]`.
    `labels` are the input ids themselves (not shifted, no −100), `mask` is 1 on the response tokens of `labels`.
    The first position can never be a scored token (nothing predicts it). Computed in float32.
    Shapes: logits (..., T, V), labels and mask (..., T); returns (...).
    """
    logits = logits[..., :-1, :].float()
    targets = labels[..., 1:]
    scored = mask[..., 1:].bool()
    picked = logits.gather(-1, torch.where(scored, targets, 0).unsqueeze(-1)).squeeze(-1)
    token_logps = picked - logits.logsumexp(-1)
    return torch.where(scored, token_logps, 0.0).sum(-1)


def noise_flags(ext_margins: torch.Tensor, history: torch.Tensor, k_fraction: float, window: int = 50,
                trusted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flag the pairs whose β·h_ḡ is among the lowest K: below the k-quantile of a rolling WINDOW (the authors'
    choice), not of the batch alone.

    The quantile is taken over this batch's values plus the most recent earlier ones, `window` values in all (a
    batch larger than the window is used whole). A pair is flagged when its value is strictly below that quantile,
    so an empty history and a single pair flags nothing. Trusted pairs (human/gold labels) neither enter the window
    nor are flagged. Returns (flags, updated history: the last `window` candidate values seen).
    """
    if not 0.0 <= k_fraction <= 1.0:
        raise ValueError(f"k_fraction must lie in [0, 1], got {k_fraction}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    values = ext_margins.detach().double().reshape(-1)
    trusted = torch.zeros_like(values, dtype=torch.bool) if trusted is None else trusted.reshape(-1).bool()
    candidates = values[~trusted]
    history = history.detach().double().reshape(-1).to(values.device)
    if len(candidates) == 0:
        return torch.zeros_like(trusted).reshape(ext_margins.shape), history[-window:]
    room = max(window - len(candidates), 0)
    pool = torch.cat([history[max(len(history) - room, 0):], candidates])
    flags = (values < torch.quantile(pool, k_fraction)) & ~trusted
    return flags.reshape(ext_margins.shape), torch.cat([history, candidates])[-window:]


def soft_labels(flags: torch.Tensor, trusted: torch.Tensor, alpha: float, step: int, total_steps: int,
                warmup_fraction: float) -> torch.Tensor:
    """ỹ = 1 − α_eff · flag, with α_eff = 0 while step < warmup_fraction · total_steps and α after. Trusted pairs
    (human/gold labels) always get ỹ = 1. Labels are smoothed, never flipped."""
    alpha_eff = 0.0 if step < warmup_fraction * total_steps else alpha
    flagged = flags.bool() & ~trusted.bool()
    return 1.0 - alpha_eff * flagged.float()


def self_refinement_loss(h: torch.Tensor, beta: float, soft_label: torch.Tensor | float) -> torch.Tensor:
    """Per-pair L = −ỹ·log σ(β·h) − (1 − ỹ)·log σ(−β·h) (log σ via logsigmoid for stability).
    With ỹ = 1 it is plain sigmoid DPO."""
    logits = beta * h
    return -soft_label * F.logsigmoid(logits) - (1 - soft_label) * F.logsigmoid(-logits)
