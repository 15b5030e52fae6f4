"""De-coupled noise detection (DESIGN.md section 1): extrapolated logits ḡ = (1 + λ)·θ − λ·ref and the flags of
the pairs whose β·h_ḡ is among the lowest K. Pure functions on tensors; the trainer calls them inside the step."""

from __future__ import annotations

import torch


def extrapolated_logits(logits_policy: torch.Tensor, logits_ref: torch.Tensor, lam: float) -> torch.Tensor:
    """logits_ḡ = (1 + λ)·logits_θ − λ·logits_ref: the policy pushed further from its reference (λ = 0: the policy)."""
    return (1 + lam) * logits_policy - lam * logits_ref


def noise_flags(
    ext_margins: torch.Tensor,
    history: torch.Tensor,
    k_fraction: float,
    window: int = 50,
    trusted: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
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
    pool = torch.cat([history[max(len(history) - room, 0) :], candidates])
    flags = (values < torch.quantile(pool, k_fraction)) & ~trusted
    return flags.reshape(ext_margins.shape), torch.cat([history, candidates])[-window:]
