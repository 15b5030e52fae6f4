"""Sampling: N samples per prompt, EOS stops, padding does not change answers, seeds reproduce."""

from __future__ import annotations

import pytest
import torch

from engine.method import models
from engine.method.encoding import response_ids
from engine.method.generation import SamplingSettings, generate
from engine.worlds.toy_model import SPECIAL

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "a much longer question than the first one, padded " * 3}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}],
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return models.load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return models.load_base_model(str(tiny_model_dir), torch.device("cpu"), torch.float32)


def biased(model, token_ids, amount):
    """Shift the logits of some tokens, on every forward pass, until the handle is removed."""
    bias = torch.zeros(model.config.vocab_size)
    bias[token_ids] = amount
    return model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)


def test_n_samples_per_prompt_in_order(model, tokenizer):
    settings = SamplingSettings(samples_per_prompt=3, temperature=1.0, max_new_tokens=8, batch_size=4)
    calls = []
    out = generate(model, tokenizer, PROMPTS, settings, progress=lambda d, t: calls.append((d, t)))
    assert [len(samples) for samples in out] == [3, 3, 3]
    assert calls == [(4, 9), (8, 9), (9, 9)]
    for samples in out:
        for s in samples:
            assert 1 <= s.n_tokens <= 8 and isinstance(s.text, str) and s.text == s.text.strip()
    assert not model.training


def test_stops_at_eos(model, tokenizer):
    handle = biased(model, [tokenizer.eos_token_id], 100.0)
    try:
        out = generate(model, tokenizer, PROMPTS, SamplingSettings(temperature=0.7, max_new_tokens=20))
    finally:
        handle.remove()
    for samples in out:
        for s in samples:
            assert s.finished and s.text == "" and s.n_tokens == len(response_ids(tokenizer, s.text)) == 1


def test_runs_to_max_new_tokens_without_eos(model, tokenizer):
    handle = biased(model, [tokenizer.eos_token_id], -100.0)
    try:
        out = generate(model, tokenizer, PROMPTS[:1], SamplingSettings(temperature=1.0, max_new_tokens=7))
    finally:
        handle.remove()
    assert all(not s.finished and s.n_tokens == 7 for s in out[0])


@pytest.mark.parametrize("architecture", ["model", "tiny_gpt2"])
def test_left_padding_does_not_change_greedy_answers(request, tokenizer, architecture):
    model = request.getfixturevalue(architecture)
    special = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL if t != tokenizer.eos_token]
    handle = biased(model, special, -100.0)  # the random model would otherwise babble invisible tokens
    try:
        settings = SamplingSettings(samples_per_prompt=1, temperature=0.0, max_new_tokens=12)
        alone = generate(model, tokenizer, PROMPTS[:1], settings)[0][0]
        batched = generate(model, tokenizer, PROMPTS[1::-1], settings)[1][0]
    finally:
        handle.remove()
    assert alone.text
    assert (alone.text, alone.n_tokens, alone.finished) == (batched.text, batched.n_tokens, batched.finished)
    assert alone.logp == pytest.approx(batched.logp, abs=1e-4)  # padding moves float32 sums by ~1e-6


def test_seeded_sampling_reproduces(model, tokenizer):
    settings = SamplingSettings(samples_per_prompt=2, temperature=1.0, max_new_tokens=10, batch_size=4, seed=3)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = generate(model, tokenizer, PROMPTS, settings)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG stream is untouched
    assert generate(model, tokenizer, PROMPTS, settings) == first
    other = generate(model, tokenizer, PROMPTS, SamplingSettings(**{**settings.__dict__, "seed": 4}))
    assert other != first


@pytest.mark.parametrize("architecture", ["model", "tiny_gpt2", "lora_policy"])
def test_sampled_logp_equals_the_scorers(request, tokenizer, architecture):
    """Sample.logp, read from the model's logits while sampling, is logp(π, x, y) as the judge would compute it
    (so the judge skips π_{i-1}'s forward pass), for answers that stopped and answers cut at max_new_tokens."""
    from engine.method import scoring

    model = request.getfixturevalue(architecture)
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    handle = biased(core, [tokenizer.eos_token_id], 1.0)
    try:
        settings = SamplingSettings(samples_per_prompt=6, temperature=0.7, top_p=0.9, max_new_tokens=12, batch_size=5)
        out = generate(model, tokenizer, PROMPTS, settings)
        kept = [(p, s) for p, samples in zip(PROMPTS, out) for s in samples if s.logp is not None]
        expected = scoring.sequence_logps(model, tokenizer, [p for p, _ in kept], [s.text for _, s in kept])
    finally:
        handle.remove()
    assert sum(s.finished for _, s in kept) >= 3 and sum(not s.finished for _, s in kept) >= 3
    assert [s.logp for _, s in kept] == pytest.approx(expected, abs=1e-4)


@pytest.fixture()
def lora_policy(tiny_model_dir, random_lora):
    return random_lora(models.load_base_model(str(tiny_model_dir), torch.device("cpu"), torch.float32), 0.3)


def test_reduced_precision_keeps_no_sampled_logp(tiny_model_dir, tokenizer):
    half = models.load_base_model(str(tiny_model_dir), torch.device("cpu"), torch.bfloat16)
    handle = biased(half, [tokenizer.eos_token_id], 4.0)
    try:
        out = generate(half, tokenizer, PROMPTS, SamplingSettings(temperature=0.7, max_new_tokens=12))
    finally:
        handle.remove()
    assert any(s.finished for samples in out for s in samples)
    assert all(s.logp is None for samples in out for s in samples)


def test_an_answer_stops_where_the_context_ends_so_the_judge_can_score_it(tiny_model_dir, monkeypatch):
    """A generation budget longer than the context left after the prompt is cut there (room kept for the EOS the
    scorer appends): a new project's default 300 new tokens on a small-context model must not fail its judge."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.method import generation
    from engine.method.encoding import prompt_ids
    from engine.method.generation import SamplingSettings, generate
    from engine.method.scoring import sequence_logps

    monkeypatch.setattr(generation, "_stop_ids", lambda model, tok: [model.config.vocab_size + 1])  # never stops
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    window = model.config.max_position_embeddings
    prompt = [{"role": "user", "content": "1 2 3 " * (window // 12)}]
    room = window - len(prompt_ids(tok, prompt)) - 1
    (samples,) = generate(
        model,
        tok,
        [prompt],
        SamplingSettings(samples_per_prompt=2, max_new_tokens=window, temperature=1.0, batch_size=2, seed=0),
    )
    assert [s.n_tokens for s in samples] == [room, room]
    assert all(len(x) == 2 for x in [sequence_logps(model, tok, [prompt, prompt], [s.text for s in samples])])
