"""Summed response log-probabilities, logp(π, x, y): the numbers the judge compares and DPO trains on.

Sequences are LEFT-padded so every response ends at the last position; the model then only needs to
project the last (longest response + 1) hidden states onto the vocabulary (`logits_to_keep`), and the
log-softmax normaliser is a float32 logsumexp per row, so no full-vocabulary float32 tensor is ever
built for the whole batch. Position ids follow the attention mask, so padding changes nothing.
A pair's two responses share their prompt: `pair_logps` runs it once and continues its KV cache twice."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from peft import PeftModel
from transformers import Cache
from trl.trainer.utils import pad, selective_log_softmax

from engine.method.encoding import prompt_ids, response_ids
from storage.records import Messages

Progress = Callable[[int, int], None]


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] at every position, in float32: the one log-prob kernel the judge's scorer and
    the trainer share. TRL's `selective_log_softmax` (a logsumexp per row, no full-vocabulary log-softmax) on a
    float32 copy of one row of the batch at a time, so no float32 copy of the whole batch's logits is built.
    Shapes: logits (B, T, V), targets (B, T); returns (B, T)."""
    return torch.cat(
        [selective_log_softmax(row.float()[None], row_targets[None]) for row, row_targets in zip(logits, targets)]
    )


def response_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed response log-probs, logp(π, x, y) = Σ_t mask[t] · log softmax(logits[t − 1])[labels[t]].

    Causal-LM alignment: `logits[:, t, :]` is the model's output at position t, so it predicts `labels[:, t + 1]`.
    `labels` are the input ids themselves (not shifted, no −100), `mask` is 1 on the response tokens of `labels`.
    The first position can never be a scored token (nothing predicts it). Computed in float32 (`token_logps`).
    Shapes: logits (B, T, V), labels and mask (B, T); returns (B,).
    """
    targets = labels[:, 1:]
    scored = mask[:, 1:].bool()
    return torch.where(scored, token_logps(logits[:, :-1], torch.where(scored, targets, 0)), 0.0).sum(-1)


def response_token_counts(tokenizer, responses: list[str]) -> list[int]:
    """How many tokens each response is scored on (its EOS included)."""
    return [len(response_ids(tokenizer, text)) for text in responses]


def sequence_logps(
    model,
    tokenizer,
    prompts: list[Messages],
    responses: list[str],
    batch_size: int = 16,
    progress: Progress | None = None,
) -> list[float]:
    """logp(model, x, y) for each (prompt, response): the sum of the response tokens' log-probs given the
    prompt, in the input order. Runs in eval mode (dropout off) and puts the model's mode back after."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    encoded = [(prompt_ids(tokenizer, p), response_ids(tokenizer, r)) for p, r in zip(prompts, responses)]
    pad_id = _pad_id(tokenizer)
    return _in_batches(model, encoded, batch_size, lambda chunk: _batch_logps(model, chunk, pad_id), progress)


def pair_logps(
    model,
    tokenizer,
    prompts: list[Messages],
    responses_a: list[str],
    responses_b: list[str],
    batch_size: int = 16,
    progress: Progress | None = None,
) -> tuple[list[float], list[float]]:
    """logp(model, x, y_a) and logp(model, x, y_b) for every pair, with the shared prompt run once per pair:
    one forward over the prompts fills a KV cache, which is repeated for the two responses and continued
    over them. Same numbers as two `sequence_logps` calls, at (P + 2R) instead of 2(P + R) tokens of work.
    batch_size counts sequences, as in sequence_logps (so batch_size // 2 pairs per forward)."""
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError("prompts, responses_a and responses_b must have the same length")
    encoded = [
        (prompt_ids(tokenizer, p), response_ids(tokenizer, a), response_ids(tokenizer, b))
        for p, a, b in zip(prompts, responses_a, responses_b)
    ]
    pad_id = _pad_id(tokenizer)

    def score(chunk):
        flat = _shared_prompt_logps(model, chunk, pad_id)
        return list(zip(flat[0::2], flat[1::2]))

    try:
        pairs = _in_batches(model, encoded, batch_size // 2 if batch_size > 1 else batch_size, score, progress)
    except NoSharedPromptCache:  # e.g. remote code with its own cache format: both sequences whole
        logps = sequence_logps(model, tokenizer, prompts + prompts, responses_a + responses_b, batch_size, progress)
        return logps[: len(prompts)], logps[len(prompts) :]
    return [a for a, _ in pairs], [b for _, b in pairs]


class TooLongForContext(ValueError):
    """A prompt (plus its answer or generation budget) does not fit the model's context window."""


def context_window(model) -> int | None:
    """The model's maximum number of positions, when its config declares one."""
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_fits(model, lengths: list[int], what: str) -> None:
    """A clear error naming the first item longer than the context window, instead of a model's silent
    extrapolation past its trained positions (RoPE) or an index error (absolute positions)."""
    window = context_window(model)
    if window is None:
        return
    too_long = [i for i, n in enumerate(lengths) if n > window]
    if too_long:
        i = too_long[0]
        raise TooLongForContext(
            f"{len(too_long)} {what} do not fit the model's context of {window} tokens; the "
            f"first is item {i} ({lengths[i]} tokens): shorten the prompt or lower the budget"
        )


class NoSharedPromptCache(TypeError):
    """The model's forward gave no transformers Cache to continue a prompt from."""


def _in_batches(model, encoded: list[tuple[list[int], ...]], per_batch: int, score, progress: Progress | None) -> list:
    """score(a batch of (prompt ids, response ids...)) for every item, returned in the input order; longest first,
    so similar lengths share a batch and an out-of-memory error shows up on the first one. Eval mode, no grad."""
    if per_batch < 1:
        raise ValueError("batch_size must be at least 1")
    if any(not item[0] for item in encoded):
        raise ValueError("a prompt encodes to no tokens; there is nothing to condition the response on")
    check_fits(model, [len(item[0]) + max(map(len, item[1:])) for item in encoded], "prompts with their answers")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + max(map(len, encoded[i][1:])), reverse=True)
    out: list = [None] * len(encoded)
    with eval_mode(model):
        for start in range(0, len(order), per_batch):
            chunk = order[start : start + per_batch]
            for i, value in zip(chunk, score([encoded[i] for i in chunk])):
                out[i] = value
            if progress is not None:
                progress(min(start + per_batch, len(order)), len(order))
    return out


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Dropout off and no autograd for the block; the model's own train/eval mode comes back after. Every
    no-gradient pass over a model (scoring, judging, sampling) runs under this."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _shared_prompt_logps(model, encoded: list[tuple[list[int], list[int], list[int]]], pad_id: int) -> list[float]:
    """[a_0, b_0, a_1, b_1, ...] for the pairs' (prompt, a, b) ids."""
    device = next(model.parameters()).device
    prompts, prompt_mask = left_pad([p for p, _, _ in encoded], pad_id)
    responses = [r for _, a, b in encoded for r in (a, b)]
    resp_ids, resp_mask = right_pad(responses, pad_id)
    rows = torch.arange(len(encoded)).repeat_interleave(2)
    logits = shared_prompt_logits(
        model, prompts.to(device), prompt_mask.to(device), resp_ids.to(device), resp_mask.to(device), rows.to(device)
    )
    token = token_logps(logits[:, : resp_ids.shape[1]], resp_ids.to(device))
    # float64 sums: hundreds of tokens lose no digits; one device sync per batch
    return torch.stack([token[row, : len(r)].double().sum() for row, r in enumerate(responses)]).tolist()


def shared_prompt_logits(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    rows: torch.Tensor,
) -> torch.Tensor:
    """Logits for responses that continue shared prompts, each prompt run once: (N, K + 1, V), where position 0 is
    the output at the prompt's last token (it predicts the first response token) and position j ≥ 1 the output at
    response token j − 1. Prompts are LEFT-padded (B, P), so every prompt's last token is the last column;
    responses RIGHT-padded (N, K) after their prompt's KV cache, picked by `rows` (N,) from the B prompts.
    Differentiable: training uses it with gradients flowing through the cache."""
    inputs = dict(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
    )
    if accepts_logits_to_keep(model):
        inputs["logits_to_keep"] = 1
    out = model(**inputs)
    cache = out.past_key_values
    if not isinstance(cache, Cache):
        raise NoSharedPromptCache(f"{type(model).__name__} returned no transformers Cache ({type(cache).__name__})")
    cache.batch_select_indices(rows)
    position_ids = prompt_mask.sum(-1)[rows, None] + torch.arange(response_ids.shape[1], device=rows.device)
    mask = torch.cat([prompt_mask[rows], response_mask], dim=-1)
    logits = model(
        input_ids=response_ids, attention_mask=mask, position_ids=position_ids, past_key_values=cache, use_cache=True
    ).logits
    return torch.cat([out.logits[rows][:, -1:], logits], dim=1)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists LEFT-padded into (ids, attention mask): every sequence ends at the last position, so the
    responses at the ends of the rows line up and `logits_to_keep` can keep only the last positions. The scorer,
    the trainer's collator, generation and the baseline judges all pad with this; position ids then follow the
    mask ((mask.cumsum(-1) - 1).clamp(min=0)), so padding changes nothing.

    >>> ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    rows = [torch.tensor(s, dtype=torch.long) for s in sequences]
    return pad(rows, pad_id, padding_side="left"), pad([torch.ones_like(r) for r in rows], 0, padding_side="left")


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RIGHT-padded (ids, attention mask), for responses that continue a shared prompt's KV cache.

    >>> right_pad([[5, 6, 7], [8]], pad_id=0)[0].tolist()
    [[5, 6, 7], [8, 0, 0]]
    """
    rows = [torch.tensor(s, dtype=torch.long) for s in sequences]
    return pad(rows, pad_id, padding_side="right"), pad([torch.ones_like(r) for r in rows], 0, padding_side="right")


def _batch_logps(model, encoded: list[tuple[list[int], list[int]]], pad_id: int) -> list[float]:
    device = next(model.parameters()).device
    width = max(len(p) + len(r) for p, r in encoded)
    keep = max(len(r) for _, r in encoded) + 1  # the logit before the first response token, up to the last one
    input_ids, attention_mask = left_pad([p + r for p, r in encoded], pad_id)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    inputs = dict(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        use_cache=False,
    )
    if accepts_logits_to_keep(model):
        inputs["logits_to_keep"] = keep
    logits = model(**inputs).logits[:, -keep:]
    targets = input_ids[:, width - keep + 1 :].to(device)  # token predicted by each kept logit but the last
    token = token_logps(logits[:, :-1], targets)
    # float64 sums: hundreds of tokens lose no digits; one device sync per batch
    return torch.stack([token[row, keep - 1 - len(r) :].double().sum() for row, (_, r) in enumerate(encoded)]).tolist()


def accepts_logits_to_keep(model) -> bool:
    """Most causal LMs in transformers can skip the vocabulary projection for positions nobody reads."""
    core = model.get_base_model() if isinstance(model, PeftModel) else model
    return "logits_to_keep" in inspect.signature(core.forward).parameters
