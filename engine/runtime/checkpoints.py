"""Where each round's model lives on disk and how it comes back: an adapter with LoRA, full weights without."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.checksums import sha256_file
from engine.config import RunConfig
from engine.method import models
from engine.method.models import Policy
from engine.runtime.distributed import Ranks


def round_model_dir(out_dir: Path, round: int) -> Path:
    """round_N/adapter with LoRA, round_N/model for a full fine-tune."""
    return out_dir / f"round_{round}"


def saved_weights(out_dir: Path, round: int, cfg: RunConfig) -> Path:
    return round_model_dir(out_dir, round) / ("adapter" if cfg.lora.enabled else "model")


def load_policy(
    cfg: RunConfig, model_path: str, out_dir: Path, round: int | None, trainable: bool = False, need_init: bool = True
) -> Policy:
    """π_round (None or -1: π_init). With LoRA, trainable continues the round's adapter (the trainer copies it
    as the next round's frozen reference)."""
    device = models.pick_device(cfg.device, Ranks.from_env().local_rank)
    dtype = models.pick_dtype(device, cfg.dtype)
    tokenizer = models.load_tokenizer(model_path, cfg.trust_remote_code)
    has_round = round is not None and round >= 0
    if cfg.lora.enabled:
        base = models.load_base_model(model_path, device, dtype, cfg.trust_remote_code)
        adapter = str(saved_weights(out_dir, round, cfg)) if has_round else None
        model = models.with_lora(base, cfg.lora, adapter_dir=adapter, trainable=trainable, seed=cfg.seed)
        return Policy(model, tokenizer)
    path = str(saved_weights(out_dir, round, cfg)) if has_round else model_path
    model = models.load_base_model(path, device, dtype, cfg.trust_remote_code)
    if trainable:
        model.train()
    init_model = None
    if need_init:
        init_model = (
            model
            if not has_round and not trainable
            else models.load_base_model(model_path, device, dtype, cfg.trust_remote_code)
        )
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
        policy.model.save_pretrained(
            tmp, selected_adapters=["default"], safe_serialization=True, state_dict=state_dict
        )
    else:
        policy.model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    policy.tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


class DamagedCheckpoint(ValueError):
    """A saved model file differs from what was written: the stage fails instead of training on garbage."""


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under a saved model folder, by path relative to it (what `artifacts` records)."""
    return {str(path.relative_to(folder)): sha256_file(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def verify_saved(folder: Path, lora: bool, recorded: dict[str, str] | None = None) -> None:
    """Before a saved round is loaded: the files it needs are there, and each file whose SHA-256 was recorded
    when it was saved still has it. Each error names the file (not PEFT's hub-id error for a missing folder)."""
    needed = ["adapter_config.json", "adapter_model.safetensors"] if lora else ["config.json"]
    for name in needed + sorted(recorded or {}):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: the saved {'adapter' if lora else 'model'} "
                f"of this round is incomplete; resume from an earlier round or retrain it"
            )
    if not lora and not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} holds no *.safetensors weights")
    for name, expected in sorted((recorded or {}).items()):
        found = sha256_file(folder / name)
        if found != expected:
            raise DamagedCheckpoint(
                f"{folder / name} is damaged: its SHA-256 is {found[:16]}…, not the "
                f"{expected[:16]}… recorded when it was saved"
            )
