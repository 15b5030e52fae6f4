"""Loading the models the engine works with: the base (π_init) and LoRA adapters on top of it (π_i). With LoRA
one set of base weights in memory serves π_init (PEFT's `disable_adapter()`), the trained policy and its
reference (TRL's frozen copy of the starting adapter, see method.trainer)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from engine.config import LoraConfig

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` takes the GPU when there is one; an explicit CUDA request without CUDA is an error, not a fallback.
    In a multi-process stage a bare `cuda` means this process's own GPU, cuda:<local_rank>."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} was asked for but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None and local_rank:
        device = torch.device("cuda", local_rank)
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix multiplies in hardware (measured on such a CPU here: 2.2× float32's rate on
    SmolLM2's MLP shapes, though only 1.2× on whole stages). Without them PyTorch emulates bf16, slower than
    float32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def pick_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """`auto`: bf16 on a GPU that supports it, float32 otherwise (fp16 without loss scaling is unsafe for DPO).
    On a CPU `auto` stays float32, so a run's numbers do not depend on which CPU it ran on; `bfloat16` there is
    an explicit choice, worth it only with native bf16 instructions."""
    if preference == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if preference not in _DTYPES:
        raise ValueError(f"unknown dtype {preference!r}; use auto or one of {sorted(_DTYPES)}")
    if device.type == "cpu" and _DTYPES[preference] == torch.bfloat16 and not cpu_has_native_bf16():
        warnings.warn(
            "dtype bfloat16 on a CPU without AVX512-BF16 or AMX: PyTorch emulates it, slower than float32 "
            "(set dtype: float32)",
            stacklevel=2,
        )
    return _DTYPES[preference]


def check_local(path_or_id: str) -> None:
    """A path that is plainly local ('/', '.', '~') and missing is a typo, not a hub id: say so plainly
    instead of the hub client's "Repo id must be in the form 'repo_name'" error."""
    if path_or_id.startswith(("/", "./", "../", "~")) and not Path(path_or_id).expanduser().exists():
        raise FileNotFoundError(f"model folder {path_or_id} does not exist (a hub id looks like 'org/name')")


def load_tokenizer(path_or_id: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's own tokenizer and chat template; padding needs a pad token, so EOS stands in when missing."""
    check_local(path_or_id)
    tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    path_or_id: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False
) -> PreTrainedModel:
    """π_init in eval mode. Safetensors only: pickled checkpoints can run code when loaded."""
    check_local(path_or_id)
    model = AutoModelForCausalLM.from_pretrained(
        path_or_id,
        dtype=dtype,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
    )
    return model.to(device).eval()


def with_lora(
    base: PreTrainedModel, lora: LoraConfig, adapter_dir: str | None = None, trainable: bool = True, seed: int = 0
) -> PeftModel:
    """Wrap `base` (modified in place) with the "default" adapter: a fresh one, or a saved one (π_{i-1})
    to continue from. A fresh adapter starts as the identity (LoRA B = 0), so it equals π_init; its random A
    comes from `seed` alone, not from whatever drew from torch's generator earlier in the process, so a run
    is the same whether it runs in a fresh stage process or after others in one (the benchmarks)."""
    if not lora.enabled:
        raise ValueError("LoRA is disabled in the settings; train the full model instead of calling with_lora")
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=trainable)
    else:
        config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with torch.random.fork_rng(devices=[]):  # PEFT initialises on the CPU; the caller's RNG is left as it was
            torch.default_generator.manual_seed(seed)
            model = get_peft_model(base, config)
        if not trainable:
            model.requires_grad_(False)
    return model if trainable else model.eval()


@contextmanager
def init_policy(model: torch.nn.Module, init_model: torch.nn.Module | None = None) -> Iterator[torch.nn.Module]:
    """A model that computes π_init. For a PEFT model it is the same model with every adapter switched off
    for the duration of the block. A full fine-tune has no adapters to switch off, so the caller keeps the
    starting weights loaded separately and passes them as `init_model`."""
    if isinstance(model, PeftModel):
        with model.disable_adapter():
            yield model
    elif init_model is not None:
        yield init_model
    else:
        raise ValueError(
            "a fully fine-tuned model has no adapters to disable: pass the separately loaded π_init as init_model"
        )


@dataclass
class Policy:
    """A loaded π_i with the means to compute π_init beside it."""

    model: torch.nn.Module
    tokenizer: object
    init_model: torch.nn.Module | None = None  # full fine-tune only; with LoRA π_init is the adapters switched off

    def init_view(self):
        return init_policy(self.model, self.init_model)
