"""Past one GPU: the command line that runs a training stage under `accelerate launch` (DDP, DeepSpeed
ZeRO-3 or FSDP, with the configs shipped in configs/accelerate/), and the split of scoring work across
data-parallel ranks. On one GPU or the CPU a stage is a plain Python process, as before."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the worker starts stages here
ACCELERATE_DIR = ROOT / "configs" / "accelerate"
STRATEGIES = ("ddp", "deepspeed_zero3", "fsdp")
STAGE_MODULE = "engine.stage_process"


def strategy_name(requested: str) -> str:
    """train.strategy -> the accelerate config to use; `auto` is DDP (each GPU holds the whole model, the
    right choice for LoRA on a model that fits one GPU; pick deepspeed_zero3 or fsdp when it does not)."""
    name = "ddp" if requested == "auto" else requested
    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be auto or one of {', '.join(STRATEGIES)}, got {requested!r}")
    return name


def accelerate_config(strategy: str) -> Path:
    path = ACCELERATE_DIR / f"{strategy_name(strategy)}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the accelerate config for strategy {strategy!r} is missing")
    return path


def train_launch_command(cfg, stage_args: list[str]) -> list[str]:
    """argv for one training stage. train.num_gpus > 1: `accelerate launch --num_processes N --config_file
    configs/accelerate/<strategy>.yaml -m engine.stage_process ARGS` (run through this interpreter as
    `python -m accelerate.commands.launch`, the module the `accelerate` script calls, so the stage gets the
    same environment without depending on PATH); otherwise `python -m engine.stage_process ARGS`."""
    gpus = cfg.train.num_gpus
    if gpus < 1:
        raise ValueError(f"train.num_gpus must be at least 1, got {gpus}")
    if gpus == 1:
        return [sys.executable, "-m", STAGE_MODULE, *stage_args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus),
            "--config_file", str(accelerate_config(cfg.train.strategy)), "-m", STAGE_MODULE, *stage_args]


def shown_train_command(cfg, db: str, job: int | str = "JOB", round: int | str = "ROUND") -> str:
    """train_launch_command as a person reads it (the UI shows it): this interpreter as `python` and the
    accelerate config relative to the repository, where the worker runs stages; the same argv otherwise."""
    argv = train_launch_command(cfg, ["--db", str(db), "--job", str(job), "--round", str(round), "--stage", "train"])
    shown = ["python" if a == sys.executable else a for a in argv]
    shown = [str(Path(a).relative_to(ROOT)) if a.startswith(str(ACCELERATE_DIR)) else a for a in shown]
    return shlex.join(shown)


def shard_indices(n_items: int, rank: int, world_size: int) -> range:
    """The contiguous block of item indices that `rank` scores: blocks differ in size by at most one and,
    concatenated in rank order, give 0..n_items-1 exactly once, so gathered results keep the input order."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    if n_items < 0:
        raise ValueError("n_items cannot be negative")
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
