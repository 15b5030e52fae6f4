"""Multi-GPU training command lines, the shipped accelerate configs, and data-parallel scoring shards."""

from __future__ import annotations

import sys

import pytest
import yaml
from accelerate.commands.launch import launch_command_parser

from engine.config import RunConfig, TrainConfig
from engine.runtime.distributed import (
    ACCELERATE_DIR,
    accelerate_config,
    shard_indices,
    stage_launch_command,
    strategy_name,
)

STAGE_ARGS = ["--db", "runs.db", "--job", "7", "--round", "2", "--stage", "train"]
DISTRIBUTED_TYPE = {"ddp": "MULTI_GPU", "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}


def cfg(num_gpus: int, strategy: str = "auto") -> RunConfig:
    return RunConfig(model="m", train=TrainConfig(num_gpus=num_gpus, strategy=strategy))


def test_one_gpu_runs_the_stage_as_a_plain_process():
    argv = stage_launch_command(cfg(1, "fsdp"), STAGE_ARGS)
    assert argv == [sys.executable, "-m", "engine.runtime.stage_process", *STAGE_ARGS]


@pytest.mark.parametrize(
    "strategy, config_name",
    [("ddp", "ddp"), ("auto", "ddp"), ("deepspeed_zero3", "deepspeed_zero3"), ("fsdp", "fsdp")],
)
def test_several_gpus_go_through_accelerate_launch(strategy, config_name):
    argv = stage_launch_command(cfg(4, strategy), STAGE_ARGS)
    config = str(ACCELERATE_DIR / f"{config_name}.yaml")
    assert argv == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "4",
        "--config_file",
        config,
        "-m",
        "engine.runtime.stage_process",
        *STAGE_ARGS,
    ]
    parsed = launch_command_parser().parse_args(argv[3:])  # what `accelerate launch` itself will read
    assert parsed.num_processes == 4 and parsed.config_file == config and parsed.module
    assert parsed.training_script == "engine.runtime.stage_process" and parsed.training_script_args == STAGE_ARGS


@pytest.mark.parametrize("strategy", sorted(DISTRIBUTED_TYPE))
def test_shipped_accelerate_configs_parse_and_name_their_strategy(strategy):
    path = accelerate_config(strategy)
    assert path.parent.parts[-2:] == ("configs", "accelerate")
    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] == DISTRIBUTED_TYPE[strategy]
    assert data["num_machines"] == 1 and data["mixed_precision"] == "bf16" and data["use_cpu"] is False
    if strategy == "deepspeed_zero3":
        assert data["deepspeed_config"]["zero_stage"] == 3
    if strategy == "fsdp":
        assert data["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    from accelerate.commands.config.config_args import ClusterConfig

    assert ClusterConfig.from_yaml_file(str(path)).distributed_type.value == DISTRIBUTED_TYPE[strategy]


def test_unknown_strategy_and_bad_gpu_counts_are_errors():
    assert strategy_name("auto") == "ddp"
    with pytest.raises(ValueError, match="train.strategy"):
        strategy_name("megatron")
    with pytest.raises(ValueError, match="num_gpus"):
        stage_launch_command(cfg(0), STAGE_ARGS)


def test_shard_indices_cover_every_index_exactly_once():
    for n_items in range(0, 23):
        for world in range(1, 7):
            shards = [shard_indices(n_items, rank, world) for rank in range(world)]
            assert [i for s in shards for i in s] == list(range(n_items))
            sizes = [len(s) for s in shards]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        shard_indices(10, 3, 3)
    with pytest.raises(ValueError):
        shard_indices(10, 0, 0)


def test_the_command_the_ui_shows_is_the_built_one_made_readable():
    from app.actions import train_command
    from engine.runtime.distributed import shown_train_command

    shown = shown_train_command(cfg(4, "deepspeed_zero3"), "spa studio.db", job=7, round=2)
    assert shown == (
        "python -m accelerate.commands.launch --num_processes 4 --config_file "
        "configs/accelerate/deepspeed_zero3.yaml -m engine.runtime.stage_process --db 'spa studio.db' "
        "--job 7 --round 2 --stage train"
    )
    assert shown_train_command(cfg(1), "x.db") == (
        "python -m engine.runtime.stage_process --db x.db --job JOB --round ROUND --stage train"
    )
    text = "model: m\nrounds: 0\ntrain:\n  num_gpus: 2\n  strategy: fsdp\n"
    assert train_command("x.db", text) == (
        "python -m accelerate.commands.launch --num_processes 2 --config_file "
        "configs/accelerate/fsdp.yaml -m engine.runtime.stage_process --db x.db "
        "--job JOB --round ROUND --stage train"
    )
    assert train_command("x.db", "model: m\nrounds: 0\ntrain:\n  num_gpus: 0\n") == ""  # not a command
    assert train_command("x.db", "model: [") == ""  # does not parse


def test_judging_on_several_gpus_is_plain_data_parallel_and_other_stages_stay_single():
    argv = stage_launch_command(cfg(2, "fsdp"), STAGE_ARGS, stage="judge")
    assert argv[argv.index("--config_file") + 1] == str(ACCELERATE_DIR / "ddp.yaml")
    seed = stage_launch_command(cfg(2, "fsdp"), STAGE_ARGS, stage="seed")
    assert seed[seed.index("--config_file") + 1] == str(ACCELERATE_DIR / "fsdp.yaml")
    with pytest.raises(ValueError, match="generate"):
        stage_launch_command(cfg(2), STAGE_ARGS, stage="generate")
    from engine.runtime.jobs import launch_command
    from storage import Job

    job = Job(project_id=1, kind="run", config_yaml="model: m\nrounds: 0\ntrain:\n  num_gpus: 2\n")
    assert launch_command(job, "generate", STAGE_ARGS) is None  # vLLM shards generation itself
    assert launch_command(job, "judge", STAGE_ARGS)[:3] == [sys.executable, "-m", "accelerate.commands.launch"]


def test_the_effective_batch_is_shared_by_every_data_parallel_rank(tmp_path):
    from engine.config import RunConfig, TrainConfig
    from engine.method.trainer import TrainSettings, dpo_config

    cfg = RunConfig(model="m", batch_size=32, train=TrainConfig(micro_batch_size=8))
    one = dpo_config(TrainSettings.for_round(cfg, 1), 100, str(tmp_path))
    four = dpo_config(TrainSettings.for_round(cfg, 1, processes=4), 100, str(tmp_path))
    assert (one.gradient_accumulation_steps, four.gradient_accumulation_steps) == (4, 1)
