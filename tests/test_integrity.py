"""What is saved comes back as saved: each model file's SHA-256 is recorded with its artifact and checked before
a round is loaded; a damaged or missing file fails with its name; library warnings reach the job's log."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.config import parse_config
from engine.runtime import checkpoints
from engine.runtime import stages as rounds
from engine.runtime.context import StageContext
from engine.runtime.stage_process import capture_library_warnings, release_library_warnings
from storage import Job, Store


@pytest.fixture
def saved_round(tmp_path, tiny_model_dir):
    """Round 0's adapter of a job, saved and registered as the seed stage does."""
    cfg = parse_config(
        f"project: p\nmodel: {tiny_model_dir}\nrounds: 0\nseed_data: s.jsonl\ndevice: cpu\n"
        f"output_dir: {tmp_path / 'out'}\nlora: {{r: 4, alpha: 8, dropout: 0.0}}\n",
        "test",
    )
    store = Store(tmp_path / "i.db")
    project = store.ensure_project("p")
    job_id = store.enqueue(Job(project_id=project.id, kind="run", config_yaml=cfg.to_yaml()))
    ctx = StageContext(store, job_id, project.id, cfg, 0, "seed")
    policy = rounds.load(ctx, None, trainable=True)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    saved = checkpoints.save_policy(policy, cfg, ctx.out_dir, 0)
    rounds.register(ctx, saved, 0)
    yield ctx, saved / "adapter_model.safetensors"
    store.close()


def test_each_saved_file_has_its_sha256_in_the_artifact(saved_round):
    ctx, weights = saved_round
    (artifact,) = ctx.store.artifacts(ctx.project_id, "adapter", ctx.job_id)
    assert artifact.meta["sha256"]["adapter_model.safetensors"] == checkpoints.sha256_file(weights)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(artifact.meta["sha256"])
    rounds.load(ctx, 0)  # intact: loads


def test_a_damaged_but_loadable_adapter_fails_naming_the_file(saved_round):
    ctx, weights = saved_round
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = torch.zeros_like(tensors[name])  # one tensor overwritten: PEFT would load it without a word
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(checkpoints.DamagedCheckpoint, match=f"{weights} is damaged: its SHA-256 is"):
        rounds.load(ctx, 0)


def test_a_deleted_weights_file_says_which_file_is_missing(saved_round):
    ctx, weights = saved_round
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=f"{weights} is missing"):
        rounds.load(ctx, 0)


def test_a_deleted_round_folder_says_which_file_is_missing_not_a_hub_id_error(saved_round):
    import shutil

    ctx, weights = saved_round
    shutil.rmtree(weights.parent)
    with pytest.raises(FileNotFoundError, match=f"{weights.parent / 'adapter_config.json'} is missing"):
        rounds.load(ctx, 0)


def test_peft_missing_keys_warning_reaches_the_job_log(saved_round):
    ctx, weights = saved_round
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights, metadata={"format": "pt"})
    handler = capture_library_warnings(ctx.store, ctx.job_id, "[round 1 generate]")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            checkpoints.load_policy(ctx.cfg, str(ctx.cfg.model), ctx.out_dir, 0)  # bypasses the SHA-256 check
        import transformers

        transformers.logging.get_logger("transformers.modeling_utils").warning("a transformers load report")
    finally:
        release_library_warnings(handler)
    log = [(e["level"], e["message"]) for e in ctx.store.events(ctx.job_id)]
    assert any(
        level == "warning" and msg.startswith("[round 1 generate] py.warnings:") and "missing adapter keys" in msg
        for level, msg in log
    ), log
    assert ("warning", "[round 1 generate] transformers.modeling_utils: a transformers load report") in log
    logging.getLogger("peft").warning("after release")  # not captured any more
    assert len(ctx.store.events(ctx.job_id)) == len(log)
