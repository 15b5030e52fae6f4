"""Model exports: a run's LoRA adapter as PEFT saved it, or merged full weights in sharded safetensors, each
with its tokenizer and model card."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.data.export.cards import model_card
from engine.data.export.records import ExportError, Progress, RunCard, RunModel
from engine.data.export.staging import PICKLE_SUFFIXES, inside


def write_adapter(tmp: Path, chosen: RunModel, card: RunCard, report: Progress) -> None:
    """The adapter folder as the run saved it (PEFT format), without pickles and with the model card."""
    src = Path(chosen.path)
    files = sorted(p for p in src.iterdir() if p.is_file())
    names = {p.name for p in files}
    missing = {"adapter_config.json", "adapter_model.safetensors"} - names
    if missing:
        raise ExportError(f"{src} is not a PEFT adapter in safetensors: missing {', '.join(sorted(missing))}")
    for i, path in enumerate(files):
        report("copy", i, len(files))
        if path.suffix not in PICKLE_SUFFIXES and path.name != "README.md":
            shutil.copyfile(path, inside(tmp, path.name))
    if "tokenizer_config.json" not in names:
        report("tokenizer", 0, 1)
        _load_tokenizer(chosen.base_model, card).save_pretrained(tmp)
    inside(tmp, "README.md").write_text(model_card(card, adapter=True), encoding="utf-8")
    report("copy", len(files), len(files))


def write_merged(tmp: Path, chosen: RunModel, card: RunCard, max_shard_size: int | str, report: Progress) -> None:
    """Full weights in safetensors, sharded past `max_shard_size`: the base with the round's adapter merged
    in, or a full fine-tune's weights; with the tokenizer (chat template) and a generation config."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trust = bool(card.cfg and card.cfg.trust_remote_code)
    report("load", 0, 3)
    if chosen.kind == "adapter":
        base = AutoModelForCausalLM.from_pretrained(
            chosen.base_model, dtype="auto", use_safetensors=True, trust_remote_code=trust
        )
        report("merge", 1, 3)
        model = PeftModel.from_pretrained(base, chosen.path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(
            chosen.path, dtype="auto", use_safetensors=True, trust_remote_code=trust
        )
    tokenizer = _load_tokenizer(chosen.path if _has_tokenizer(chosen.path) else chosen.base_model, card)
    generation = model.generation_config
    if generation.eos_token_id is None:
        generation.eos_token_id = tokenizer.eos_token_id
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    report("save", 2, 3)
    model.save_pretrained(tmp, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(tmp)
    inside(tmp, "README.md").write_text(model_card(card, adapter=False), encoding="utf-8")
    report("save", 3, 3)


def _has_tokenizer(path: str) -> bool:
    return (Path(path) / "tokenizer_config.json").is_file()


def _load_tokenizer(path: str, card: RunCard):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=bool(card.cfg and card.cfg.trust_remote_code))
