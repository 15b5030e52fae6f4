"""The vLLM backend's choice and its pure parts (parameter mapping, adapter rank, output mapping). Where vLLM
can run (CUDA + requirements-gpu.txt) one real generation test runs too; nothing here fakes an engine."""

from __future__ import annotations

import json

import pytest

from engine.config import GenerationConfig, JudgeConfig, LoraConfig, RunConfig, TrainConfig
from engine.method.generation import SamplingSettings
from engine.method.generation_vllm import (
    VLLMGenerator,
    adapter_rank,
    engine_settings,
    lora_rank_limit,
    pick_backend,
    round_sampler,
    sampling_kwargs,
    stop_token_ids,
    to_sample,
    vllm_available,
)
from engine.method.models import load_tokenizer

VLLM_OK, VLLM_WHY = vllm_available()


def test_vllm_available_says_why_not():
    ok, why = vllm_available()
    assert isinstance(ok, bool) and why
    if not ok:
        assert "not installed" in why or "CUDA" in why or "does not import" in why


def test_hf_is_always_hf_and_bad_names_are_errors():
    assert pick_backend("hf") == "hf"
    with pytest.raises(ValueError, match="hf, vllm, auto"):
        pick_backend("tgi")


@pytest.mark.skipif(VLLM_OK, reason="vLLM can run here")
def test_without_vllm_auto_is_hf_and_vllm_is_a_clear_error():
    assert pick_backend("auto") == "hf"
    with pytest.raises(RuntimeError, match="requirements-gpu.txt") as err:
        pick_backend("vllm")
    assert VLLM_WHY in str(err.value)
    with pytest.raises(RuntimeError, match="cannot start the vLLM backend"):
        VLLMGenerator("any-model")


def test_sampling_settings_map_onto_sampling_params():
    settings = SamplingSettings(samples_per_prompt=4, temperature=0.7, top_p=0.9, max_new_tokens=300, seed=11)
    assert sampling_kwargs(settings, [2, 7], seed=12) == dict(
        n=4, temperature=0.7, top_p=0.9, max_tokens=300, seed=12, stop_token_ids=[2, 7], skip_special_tokens=True
    )
    greedy = sampling_kwargs(SamplingSettings(samples_per_prompt=1, temperature=0.0, top_p=0.5), [2], seed=0)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["n"] == 1
    assert "top_k" not in greedy  # vLLM's default top-k is off, as engine.method.generation sets it
    with pytest.raises(ValueError):
        sampling_kwargs(SamplingSettings(max_new_tokens=0), [2], seed=0)


def test_lora_ranks(tmp_path):
    assert [lora_rank_limit(r) for r in (1, 2, 8, 16, 17, 64, 200)] == [1, 8, 8, 16, 32, 64, 256]
    with pytest.raises(ValueError):
        lora_rank_limit(1024)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    assert adapter_rank(tmp_path) == 16
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        adapter_rank(tmp_path / "missing")


def test_engine_settings_follow_the_run_configuration():
    cfg = RunConfig(model="m", dtype="bfloat16", seed=5, lora=LoraConfig(r=16), train=TrainConfig(num_gpus=4))
    assert engine_settings(cfg, "/models/base") == dict(
        model_path="/models/base",
        tensor_parallel_size=4,
        dtype="bfloat16",
        max_lora_rank=16,
        gpu_memory_utilization=0.9,
        seed=5,
        trust_remote_code=False,
    )
    full = RunConfig(model="m", lora=LoraConfig(enabled=False))
    assert engine_settings(full, "/runs/round_0/model")["max_lora_rank"] is None
    assert engine_settings(full, "/runs/round_0/model")["tensor_parallel_size"] == 1
    best_of_n = RunConfig(
        model="m",
        judge=JudgeConfig(kind="density_ratio", strong_model="s", weak_model="w"),
        generation=GenerationConfig(samples_per_prompt=4),
    )
    assert engine_settings(best_of_n, "m")["gpu_memory_utilization"] == 0.5  # room for the judge's two models


@pytest.mark.skipif(VLLM_OK, reason="vLLM can run here")
def test_round_sampler_without_vllm(tiny_model_dir):
    """auto samples with transformers and says why; vllm fails before any model is loaded."""
    from engine.runtime.checkpoints import load_policy

    base = str(tiny_model_dir)
    loaded = []

    def load():
        loaded.append(True)
        return load_policy(cfg, base, tiny_model_dir, None)

    cfg = RunConfig(model=base, device="cpu", generation=GenerationConfig(backend="auto"))
    sampler = round_sampler(cfg, base, tiny_model_dir / "round_0" / "adapter", load)
    assert sampler.backend == "hf" and loaded and VLLM_WHY in sampler.note
    out = sampler.generate(
        [[{"role": "user", "content": "add: 2+3"}]], SamplingSettings(samples_per_prompt=2, max_new_tokens=4, seed=1)
    )
    assert len(out) == 1 and len(out[0]) == 2
    loaded.clear()
    cfg.generation.backend = "vllm"
    with pytest.raises(RuntimeError, match="generation.backend is vllm"):
        round_sampler(cfg, base, tiny_model_dir, load)
    assert not loaded


def test_completions_become_samples_like_the_hf_backend(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    stops = stop_token_ids(tok, str(tiny_model_dir))
    assert stops == [tok.eos_token_id]
    ids = tok(" 42 ", add_special_tokens=False)["input_ids"]
    with_eos = to_sample(tok, ids + [tok.eos_token_id], "stop", stops)
    assert (with_eos.text, with_eos.n_tokens, with_eos.finished) == ("42", len(ids) + 1, True)
    eos_dropped = to_sample(tok, ids, "stop", stops)  # vLLM may leave the stop token out of token_ids
    assert (eos_dropped.text, eos_dropped.n_tokens, eos_dropped.finished) == ("42", len(ids) + 1, True)
    cut = to_sample(tok, ids, "length", stops)
    assert (cut.text, cut.n_tokens, cut.finished) == ("42", len(ids), False)


@pytest.mark.skipif(not VLLM_OK, reason=VLLM_WHY)
def test_vllm_generates_from_base_and_adapter(tmp_path):
    """Real generation (GPU machines only): a toy model with a vLLM-friendly head size and a LoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.worlds.toy_model import save_toy_model

    base = save_toy_model(tmp_path / "base", hidden=256, layers=2, heads=4)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    )
    peft.save_pretrained(tmp_path / "adapter")
    generator = VLLMGenerator(str(base), dtype="float32", max_lora_rank=8, gpu_memory_utilization=0.3)
    settings = SamplingSettings(samples_per_prompt=3, temperature=0.7, max_new_tokens=8, seed=1)
    prompts = [[{"role": "user", "content": "add: 2+3"}], [{"role": "user", "content": "sort: 3 1 2"}]]
    for adapter in (None, str(tmp_path / "adapter")):
        out = generator.generate(prompts, settings, adapter)
        assert [len(group) for group in out] == [3, 3]
        assert all(0 < s.n_tokens <= 8 for group in out for s in group)
