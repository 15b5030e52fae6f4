"""Summed response log-probabilities, logp(π, x, y): the numbers the judge compares and DPO trains on.

Sequences are LEFT-padded so every response ends at the last position; the model then only needs to
project the last (longest response + 1) hidden states onto the vocabulary (`logits_to_keep`), and the
log-softmax normaliser is a float32 logsumexp per row, so no full-vocabulary float32 tensor is ever
built for the whole batch. Position ids follow the attention mask, so padding changes nothing.
A pair's two responses share their prompt: `pair_logps` runs it once and continues its KV cache twice."""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from peft import PeftModel

from engine.encoding import prompt_ids, response_ids
from storage.records import Messages

Progress = Callable[[int, int], None]


def response_token_counts(tokenizer, responses: list[str]) -> list[int]:
    """How many tokens each response is scored on (its EOS included)."""
    return [len(response_ids(tokenizer, text)) for text in responses]


def sequence_logps(model, tokenizer, prompts: list[Messages], responses: list[str], batch_size: int = 16,
                   progress: Progress | None = None) -> list[float]:
    """logp(model, x, y) for each (prompt, response): the sum of the response tokens' log-probs given the
    prompt, in the input order. Runs in eval mode (dropout off) and puts the model's mode back after."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    encoded = [(prompt_ids(tokenizer, p), response_ids(tokenizer, r)) for p, r in zip(prompts, responses)]
    if any(not p for p, _ in encoded):
        raise ValueError("a prompt encodes to no tokens; there is nothing to condition the response on")
    # Longest first: similar lengths share a batch, and an out-of-memory error shows up on the first batch.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]), reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logps = [0.0] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                for i, value in zip(chunk, _batch_logps(model, [encoded[i] for i in chunk], pad_id)):
                    logps[i] = value
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    return logps


def pair_logps(model, tokenizer, prompts: list[Messages], responses_a: list[str], responses_b: list[str],
               batch_size: int = 16, progress: Progress | None = None) -> tuple[list[float], list[float]]:
    """logp(model, x, y_a) and logp(model, x, y_b) for every pair, with the shared prompt run once per pair:
    one forward over the prompts fills a KV cache, which is repeated for the two responses and continued
    over them. Same numbers as two `sequence_logps` calls, at (P + 2R) instead of 2(P + R) tokens of work.
    batch_size counts sequences, as in sequence_logps (so batch_size // 2 pairs per forward)."""
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError("prompts, responses_a and responses_b must have the same length")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    encoded = [(prompt_ids(tokenizer, p), response_ids(tokenizer, a), response_ids(tokenizer, b))
               for p, a, b in zip(prompts, responses_a, responses_b)]
    if any(not p for p, _, _ in encoded):
        raise ValueError("a prompt encodes to no tokens; there is nothing to condition the response on")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + max(map(len, encoded[i][1:])),
                   reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pairs_per_batch = max(1, batch_size // 2)
    logps_a, logps_b = [0.0] * len(encoded), [0.0] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), pairs_per_batch):
                chunk = order[start:start + pairs_per_batch]
                values = _shared_prompt_logps(model, [encoded[i] for i in chunk], pad_id)
                for k, i in enumerate(chunk):
                    logps_a[i], logps_b[i] = values[2 * k], values[2 * k + 1]
                if progress is not None:
                    progress(min(start + pairs_per_batch, len(order)), len(order))
    finally:
        model.train(was_training)
    return logps_a, logps_b


def _shared_prompt_logps(model, encoded: list[tuple[list[int], list[int], list[int]]], pad_id: int) -> list[float]:
    """[a_0, b_0, a_1, b_1, ...]: prompts left-padded (so each one's last token is the last column, whose
    logits predict the first response token), responses right-padded after the repeated prompt cache."""
    device = next(model.parameters()).device
    n = len(encoded)
    width = max(len(p) for p, _, _ in encoded)
    prompt_ids_ = torch.full((n, width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((n, width), dtype=torch.long)
    for row, (p, _, _) in enumerate(encoded):
        prompt_ids_[row, width - len(p):] = torch.tensor(p)
        prompt_mask[row, width - len(p):] = 1
    inputs = dict(input_ids=prompt_ids_.to(device), attention_mask=prompt_mask.to(device),
                  position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True)
    if _accepts_logits_to_keep(model):
        inputs["logits_to_keep"] = 1
    out = model(**inputs)
    first_logits = out.logits[:, -1].float()  # predicts each response's first token
    cache = out.past_key_values
    cache.batch_repeat_interleave(2)
    responses = [r for _, a, b in encoded for r in (a, b)]
    length = max(len(r) for r in responses)
    resp_ids = torch.full((2 * n, length), pad_id, dtype=torch.long)
    resp_mask = torch.zeros((2 * n, length), dtype=torch.long)
    for row, r in enumerate(responses):
        resp_ids[row, :len(r)] = torch.tensor(r)
        resp_mask[row, :len(r)] = 1
    prompt_lengths = prompt_mask.sum(-1).repeat_interleave(2)
    position_ids = prompt_lengths[:, None] + torch.arange(length)[None, :]
    mask = torch.cat([prompt_mask.repeat_interleave(2, dim=0), resp_mask], dim=-1)
    resp_logits = model(input_ids=resp_ids.to(device), attention_mask=mask.to(device),
                        position_ids=position_ids.to(device), past_key_values=cache, use_cache=True).logits
    sums = []
    for row, r in enumerate(responses):
        row_logits = torch.cat([first_logits[row // 2, None], resp_logits[row, :len(r) - 1].float()])
        targets = resp_ids[row, :len(r), None].to(device)
        token_logps = row_logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(row_logits, dim=-1)
        sums.append(token_logps.double().sum())  # float64 sum: hundreds of tokens lose no digits
    return torch.stack(sums).tolist()  # one device sync per batch


def _batch_logps(model, encoded: list[tuple[list[int], list[int]]], pad_id: int) -> list[float]:
    device = next(model.parameters()).device
    width = max(len(p) + len(r) for p, r in encoded)
    keep = max(len(r) for _, r in encoded) + 1  # the logit before the first response token, up to the last one
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (p, r) in enumerate(encoded):
        input_ids[row, width - len(p) - len(r):] = torch.tensor(p + r)
        attention_mask[row, width - len(p) - len(r):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    inputs = dict(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                  position_ids=position_ids.to(device), use_cache=False)
    if _accepts_logits_to_keep(model):
        inputs["logits_to_keep"] = keep
    logits = model(**inputs).logits[:, -keep:]
    targets = input_ids[:, width - keep + 1:].to(device)  # token predicted by each kept logit but the last
    sums = []
    for row, (_, r) in enumerate(encoded):
        row_logits = logits[row, keep - 1 - len(r):keep - 1].float()
        picked = row_logits.gather(-1, targets[row, keep - 1 - len(r):, None]).squeeze(-1)
        token_logps = picked - torch.logsumexp(row_logits, dim=-1)
        sums.append(token_logps.double().sum())  # float64 sum: hundreds of tokens lose no digits
    return torch.stack(sums).tolist()  # one device sync per batch


def _accepts_logits_to_keep(model) -> bool:
    """Most causal LMs in transformers can skip the vocabulary projection for positions nobody reads."""
    core = model.get_base_model() if isinstance(model, PeftModel) else model
    return "logits_to_keep" in inspect.signature(core.forward).parameters
