"""Batched, padded, sorted scoring must give exactly the numbers of a plain one-sequence forward pass."""

from __future__ import annotations

import pytest
import torch

from engine.method import models, scoring
from engine.method.encoding import prompt_ids, response_ids

CPU = torch.device("cpu")

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "tell me a long story " * 8}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
]
RESPONSES = ["", "6", "A fairly ordinary answer.", "z" * 180]


def cases():
    """Every prompt with every response: lengths from 1 to ~300 tokens, mixed in one batch."""
    prompts = [p for p in PROMPTS for _ in RESPONSES]
    responses = [r for _ in PROMPTS for r in RESPONSES]
    return prompts, responses


def direct_logp(model, tokenizer, prompt, response) -> float:
    p, r = prompt_ids(tokenizer, prompt), response_ids(tokenizer, response)
    with torch.no_grad():
        logprobs = model(torch.tensor([p + r])).logits[0].float().log_softmax(-1)
    positions = torch.arange(len(p) - 1, len(p) + len(r) - 1)
    return logprobs[positions, torch.tensor(r)].double().sum().item()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return models.load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return models.load_base_model(str(tiny_model_dir), CPU, torch.float32)


@pytest.mark.parametrize("architecture", ["base", "tiny_gpt2"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_equals_one_at_a_time(request, tokenizer, architecture, batch_size):
    model = request.getfixturevalue(architecture)
    prompts, responses = cases()
    expected = [direct_logp(model, tokenizer, p, r) for p, r in zip(prompts, responses)]
    got = scoring.sequence_logps(model, tokenizer, prompts, responses, batch_size=batch_size)
    assert max(abs(a - b) for a, b in zip(expected, got)) < 1e-4
    assert all(v < 0 for v in got)


@pytest.mark.parametrize("architecture", ["base", "tiny_gpt2"])
@pytest.mark.parametrize("batch_size", [1, 5, 16])
def test_pair_logps_with_shared_prompt_equal_direct_passes(request, tokenizer, architecture, batch_size):
    """The prompt runs once and its KV cache serves both responses: same numbers as full sequences."""
    model = request.getfixturevalue(architecture)
    prompts, responses = cases()
    reverse = responses[::-1]
    a, b = scoring.pair_logps(model, tokenizer, prompts, responses, reverse, batch_size=batch_size)
    assert a == pytest.approx([direct_logp(model, tokenizer, p, r) for p, r in zip(prompts, responses)], abs=1e-4)
    assert b == pytest.approx([direct_logp(model, tokenizer, p, r) for p, r in zip(prompts, reverse)], abs=1e-4)


def test_pair_logps_under_disabled_adapters(tiny_model_dir, tokenizer, random_lora):
    prompts, responses = cases()
    base = models.load_base_model(str(tiny_model_dir), CPU, torch.float32)
    expected = scoring.pair_logps(base, tokenizer, prompts, responses, responses[::-1], batch_size=6)
    peft_model = random_lora(base, 0.5)
    policy = scoring.pair_logps(peft_model, tokenizer, prompts, responses, responses[::-1], batch_size=6)
    assert policy[0] == pytest.approx(scoring.sequence_logps(peft_model, tokenizer, prompts, responses), abs=1e-4)
    with models.init_policy(peft_model) as init:
        got = scoring.pair_logps(init, tokenizer, prompts, responses, responses[::-1], batch_size=6)
    assert got[0] == pytest.approx(expected[0], abs=1e-5) and got[1] == pytest.approx(expected[1], abs=1e-5)
    assert max(abs(x - y) for x, y in zip(policy[0], expected[0])) > 0.1


def test_progress_counts_and_mode_is_restored(base, tokenizer):
    prompts, responses = cases()
    calls = []
    base.train()
    scoring.sequence_logps(
        base, tokenizer, prompts, responses, batch_size=5, progress=lambda d, t: calls.append((d, t))
    )
    assert base.training
    base.eval()
    assert calls == [(5, 12), (10, 12), (12, 12)]


def test_token_counts_include_eos(tokenizer):
    assert scoring.response_token_counts(tokenizer, ["", "abc"]) == [1, 4]


def test_bfloat16_model_scores_close_to_float32(tiny_model_dir, base, tokenizer):
    prompts, responses = cases()
    half = models.load_base_model(str(tiny_model_dir), CPU, torch.bfloat16)
    exact = scoring.sequence_logps(base, tokenizer, prompts, responses)
    approx = scoring.sequence_logps(half, tokenizer, prompts, responses)
    assert approx == pytest.approx(exact, rel=0.02, abs=0.1)


def test_disabled_adapters_give_base_numbers(tiny_model_dir, tokenizer, random_lora):
    prompts, responses = cases()
    base = models.load_base_model(str(tiny_model_dir), CPU, torch.float32)
    base_logps = scoring.sequence_logps(base, tokenizer, prompts, responses, batch_size=4)
    peft_model = random_lora(base, 0.5)
    with models.init_policy(peft_model) as init:
        assert scoring.sequence_logps(init, tokenizer, prompts, responses, batch_size=4) == base_logps
    policy = scoring.sequence_logps(peft_model, tokenizer, prompts, responses, batch_size=4)
    assert max(abs(a - b) for a, b in zip(policy, base_logps)) > 0.1


def test_mismatched_lengths_are_an_error(base, tokenizer):
    with pytest.raises(ValueError):
        scoring.sequence_logps(base, tokenizer, PROMPTS, RESPONSES)


class NoCacheModel(torch.nn.Module):
    """A causal LM whose forward never returns a transformers Cache (as some remote-code models)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, **kwargs):
        return self.inner(**{**kwargs, "use_cache": False})


def test_pair_logps_without_a_cache_scores_whole_sequences(base, tokenizer):
    prompts, responses = cases()
    a, b = scoring.pair_logps(NoCacheModel(base), tokenizer, prompts, responses, responses[::-1], batch_size=4)
    assert a == pytest.approx([direct_logp(base, tokenizer, p, r) for p, r in zip(prompts, responses)], abs=1e-4)
    assert b == pytest.approx([direct_logp(base, tokenizer, p, r) for p, r in zip(prompts, responses[::-1])], abs=1e-4)


def test_the_log_prob_kernel_equals_a_direct_log_softmax():
    """scoring.token_logps (TRL's selective_log_softmax, one float32 row at a time) and response_logps built on it
    give what a float64 log_softmax-then-gather gives, for float32 and bfloat16 logits, with gradients."""
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 11, generator=gen) * 4).requires_grad_()
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    direct_tokens = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None]).squeeze(-1)
    assert torch.allclose(scoring.token_logps(logits, labels).double(), direct_tokens, atol=1e-5)
    predicted = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, labels[:, 1:, None]).squeeze(-1)
    direct = (predicted * mask[:, 1:]).sum(-1)  # output t predicts token t + 1
    got = scoring.response_logps(logits, labels, mask)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), direct, atol=1e-5)
    got.sum().backward()
    assert logits.grad is not None and logits.grad[:, -1].abs().sum() == 0  # the last output predicts nothing
    half = logits.detach().bfloat16()
    half_direct = torch.log_softmax(half.double(), -1).gather(-1, labels[..., None]).squeeze(-1)
    assert torch.allclose(scoring.token_logps(half, labels).double(), half_direct, atol=1e-5)


def test_padding_helpers_and_their_worked_examples():
    import doctest

    assert doctest.testmod(scoring).failed == 0 and doctest.testmod(scoring).attempted >= 3
    ids, mask = scoring.left_pad([[1, 2], [3, 4, 5], [6]], pad_id=9)
    assert ids.tolist() == [[9, 1, 2], [3, 4, 5], [9, 9, 6]] and mask.sum(-1).tolist() == [2, 3, 1]
    assert (ids[:, -1].tolist(), ids.dtype, mask.dtype) == ([2, 5, 6], torch.long, torch.long)
