"""Model loading: devices and dtypes, the tokenizer's pad token, LoRA adapters and π_init views."""

from __future__ import annotations

import warnings

import pytest
import torch

from engine.config import LoraConfig
from engine.method import models
from engine.worlds.toy_model import char_tokenizer

CPU = torch.device("cpu")
LORA = LoraConfig(r=4, alpha=8, dropout=0.0)


def logits(model, text_ids=(1, 10, 20, 30, 40)):
    with torch.no_grad():
        return model(torch.tensor([list(text_ids)])).logits


def perturb_lora(model, seed=0):
    """Random LoRA B of the "default" adapter: the policy moves away from its base (and from any other adapter)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B.default." in name:
                param.normal_(std=0.5)


def test_pick_device_and_dtype():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert models.pick_device("auto").type == expected
    assert models.pick_device("cpu") == CPU
    assert models.pick_dtype(CPU, "auto") == torch.float32
    assert models.pick_dtype(CPU, "bf16") == torch.bfloat16
    with pytest.raises(ValueError):
        models.pick_dtype(CPU, "int3")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):
            models.pick_device("cuda")


def test_bfloat16_on_a_cpu_without_native_bf16_warns_and_still_loads(monkeypatch):
    """Emulated bf16 is slower than float32: say so, but honour the explicit choice (it still halves memory)."""
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without AVX512-BF16 or AMX"):
        assert models.pick_dtype(CPU, "bfloat16") == torch.bfloat16
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert models.pick_dtype(CPU, "bfloat16") == torch.bfloat16
        assert models.pick_dtype(CPU, "auto") == torch.float32  # auto never depends on which CPU this is


def test_tokenizer_keeps_template_and_gets_a_pad_token(tmp_path, tiny_model_dir):
    tok = models.load_tokenizer(str(tiny_model_dir))
    assert tok.chat_template and tok.pad_token == "<pad>"
    bare = char_tokenizer()
    bare.pad_token = None
    bare.save_pretrained(tmp_path)
    loaded = models.load_tokenizer(str(tmp_path))
    assert loaded.pad_token_id == loaded.eos_token_id
    assert loaded.chat_template == bare.chat_template


def test_base_model_loads_in_eval_mode(tiny_model_dir):
    model = models.load_base_model(str(tiny_model_dir), CPU, torch.bfloat16)
    assert not model.training
    assert next(model.parameters()).dtype == torch.bfloat16


def test_fresh_adapter_is_the_identity_and_only_lora_trains(tiny_model_dir):
    base = models.load_base_model(str(tiny_model_dir), CPU, torch.float32)
    before = logits(base)
    model = models.with_lora(base, LORA)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert torch.equal(logits(model), before)
    frozen = models.with_lora(models.load_base_model(str(tiny_model_dir), CPU, torch.float32), LORA, trainable=False)
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError):
        models.with_lora(base, LoraConfig(enabled=False))


def test_fresh_adapter_init_depends_on_the_seed_not_on_earlier_draws(tiny_model_dir):
    def lora_a(seed: int, draws: int) -> dict:
        torch.randn(draws)  # whatever ran earlier in the process
        model = models.with_lora(models.load_base_model(str(tiny_model_dir), CPU, torch.float32), LORA, seed=seed)
        return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}

    first, again, other = lora_a(3, 1), lora_a(3, 1000), lora_a(4, 1)
    assert first and all(torch.equal(first[n], again[n]) for n in first)
    assert all(not torch.equal(first[n], other[n]) for n in first)
    state = torch.get_rng_state()
    lora_a(3, 0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was


def test_saved_adapter_continues_and_becomes_the_reference(tmp_path, tiny_model_dir):
    trained = models.with_lora(models.load_base_model(str(tiny_model_dir), CPU, torch.float32), LORA)
    perturb_lora(trained)
    trained.save_pretrained(tmp_path / "round1")
    expected = logits(trained)

    resumed = models.with_lora(
        models.load_base_model(str(tiny_model_dir), CPU, torch.float32), LORA, adapter_dir=str(tmp_path / "round1")
    )
    assert torch.allclose(logits(resumed), expected)
    assert any(p.requires_grad for p in resumed.parameters())

    # the next round's trainer takes TRL's frozen copy of the adapter it starts from as its reference (π_{i-1})
    from engine.method.preference_data import TrainRow
    from engine.method.trainer import TRL_REF_ADAPTER, TrainSettings, make_trainer

    row = TrainRow(pair_id=1, prompt=[{"role": "user", "content": "hi"}], chosen="ab", rejected="ba")
    settings = TrainSettings(
        beta=0.1,
        learning_rate=1e-3,
        epochs=1,
        batch_size=1,
        micro_batch_size=1,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        seed=0,
        bf16=False,
        gradient_checkpointing=False,
        group_by_length=False,
    )
    trainer = make_trainer(
        resumed, models.load_tokenizer(str(tiny_model_dir)), [row], settings, None, reference="ref_adapter"
    )
    assert trainer.ref_adapter == TRL_REF_ADAPTER and resumed.active_adapter == "default"
    perturb_lora(resumed, seed=1)  # "default" trains on, away from π_{i-1}
    reference = [p for n, p in resumed.named_parameters() if f".{TRL_REF_ADAPTER}." in n]
    default = [p for n, p in resumed.named_parameters() if ".default." in n]
    assert reference and not any(p.requires_grad for p in reference)
    assert default and all(p.requires_grad for p in default)
    resumed.eval()
    assert not torch.allclose(logits(resumed), expected)
    resumed.set_adapter(TRL_REF_ADAPTER)
    assert torch.allclose(logits(resumed), expected)


def test_init_policy(tiny_model_dir):
    base = models.load_base_model(str(tiny_model_dir), CPU, torch.float32)
    before = logits(base)
    with pytest.raises(ValueError):
        with models.init_policy(base):
            pass
    separate = object()
    with models.init_policy(base, init_model=separate) as init:
        assert init is separate
    peft_model = models.with_lora(base, LORA)
    perturb_lora(peft_model)
    with models.init_policy(peft_model) as init:
        assert torch.equal(logits(init), before)
    assert not torch.allclose(logits(peft_model), before)


def test_a_missing_local_model_folder_is_named_plainly(tmp_path):
    from engine.method.models import load_base_model, load_tokenizer

    missing = str(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="no-such-model does not exist"):
        load_tokenizer(missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_base_model(missing, torch.device("cpu"), torch.float32)
