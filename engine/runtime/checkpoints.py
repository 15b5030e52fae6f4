"""Where each round's model lives on disk and how it comes back: an adapter with LoRA, full weights without."""
from __future__ import annotations

import shutil
from pathlib import Path

from engine.config import RunConfig
from engine.method import models
from engine.method.models import Policy
from engine.runtime.distributed import Ranks


def round_model_dir(out_dir: Path, round: int) -> Path:
    """round_N/adapter with LoRA, round_N/model for a full fine-tune."""
    return out_dir / f"round_{round}"


def saved_weights(out_dir: Path, round: int, cfg: RunConfig) -> Path:
    return round_model_dir(out_dir, round) / ("adapter" if cfg.lora.enabled else "model")


def load_policy(cfg: RunConfig, model_path: str, out_dir: Path, round: int | None, trainable: bool = False,
                with_reference: bool = False, need_init: bool = True) -> Policy:
    """π_round (None or -1: π_init). With LoRA, trainable continues the round's adapter and `with_reference`
    loads a frozen copy of it as the "reference" adapter (π_{i-1} for the next round's training)."""
    device = models.pick_device(cfg.device, Ranks.from_env().local_rank)
    dtype = models.pick_dtype(device, cfg.dtype)
    tokenizer = models.load_tokenizer(model_path, cfg.trust_remote_code)
    has_round = round is not None and round >= 0
    if cfg.lora.enabled:
        base = models.load_base_model(model_path, device, dtype, cfg.trust_remote_code)
        adapter = str(saved_weights(out_dir, round, cfg)) if has_round else None
        model = models.with_lora(base, cfg.lora, adapter_dir=adapter, trainable=trainable, seed=cfg.seed)
        if with_reference and adapter:
            models.add_reference_adapter(model, adapter)
        return Policy(model, tokenizer)
    path = str(saved_weights(out_dir, round, cfg)) if has_round else model_path
    model = models.load_base_model(path, device, dtype, cfg.trust_remote_code)
    if trainable:
        model.train()
    init_model = None
    if need_init:
        init_model = model if not has_round and not trainable else models.load_base_model(
            model_path, device, dtype, cfg.trust_remote_code)
    return Policy(model, tokenizer, init_model)


def save_policy(policy: Policy, cfg: RunConfig, out_dir: Path, round: int, state_dict: dict | None = None) -> Path:
    """Write π_round (adapter or full weights, plus the tokenizer) atomically: temp folder, then rename.
    `state_dict`: the full weights gathered from ranks that sharded them (DeepSpeed ZeRO-3, FSDP)."""
    target = saved_weights(out_dir, round, cfg)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if cfg.lora.enabled:
        policy.model.save_pretrained(tmp, selected_adapters=["default"], safe_serialization=True,
                                     state_dict=state_dict)
    else:
        policy.model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    policy.tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
