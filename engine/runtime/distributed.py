"""Past one GPU: the command line that runs a stage under `accelerate launch` (training with DDP, DeepSpeed
ZeRO-3 or FSDP, with the configs shipped in configs/accelerate/; judging as data-parallel scoring), which rank a
stage process is, and the few collective steps the stages need (a barrier, "did any rank stop?"). On one GPU
or the CPU a stage is a plain Python process and all of this reduces to rank 0 of a world of 1."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the worker starts stages here
ACCELERATE_DIR = ROOT / "configs" / "accelerate"
STRATEGIES = ("ddp", "deepspeed_zero3", "fsdp")
STAGE_MODULE = "engine.runtime.stage_process"
MULTI_PROCESS_STAGES = ("seed", "train", "judge")  # judge: data-parallel scoring, always plain DDP


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a multi-process stage, from the variables `accelerate launch` and
    `torchrun` set. Only rank 0 writes the stage's shared results (log lines, metrics, progress, the saved
    round, "stage done"); every rank writes the rows it alone computed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Ranks":
        ranks = cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
        if ranks.world_size < 1 or not 0 <= ranks.rank < ranks.world_size:
            raise ValueError(f"RANK={ranks.rank} is not in a world of WORLD_SIZE={ranks.world_size}")
        return ranks

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_process_group(ranks: Ranks) -> None:
    """Join the stage's process group (NCCL on GPUs, gloo on the CPU) unless alone or already joined; the
    trainer's accelerator then reuses it."""
    import torch
    import torch.distributed as dist

    if not ranks.distributed or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """True on every rank when `flag` is true on any: ranks that train together must stop at the same step,
    or the others wait forever in the next gradient all-reduce."""
    if not ranks.distributed:
        return flag
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


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


def stage_launch_command(cfg, stage_args: list[str], stage: str = "train") -> list[str]:
    """argv for one training (seed or train) or judge stage. train.num_gpus > 1: `accelerate launch --num_processes N
    --config_file configs/accelerate/<strategy>.yaml -m engine.runtime.stage_process ARGS` (run through this
    interpreter as `python -m accelerate.commands.launch`, the module the `accelerate` script calls, so the
    stage gets the same environment without depending on PATH); otherwise
    `python -m engine.runtime.stage_process ARGS`.
    A judge stage scores disjoint shards of the pairs, one per GPU, so it always runs as plain DDP."""
    if stage not in MULTI_PROCESS_STAGES:
        raise ValueError(f"only the {' and '.join(MULTI_PROCESS_STAGES)} stages span several processes, not {stage!r}")
    gpus = cfg.train.num_gpus
    if gpus < 1:
        raise ValueError(f"train.num_gpus must be at least 1, got {gpus}")
    if gpus == 1:
        return [sys.executable, "-m", STAGE_MODULE, *stage_args]
    strategy = "ddp" if stage == "judge" else cfg.train.strategy
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(gpus),
        "--config_file",
        str(accelerate_config(strategy)),
        "-m",
        STAGE_MODULE,
        *stage_args,
    ]


def shown_train_command(cfg, db: str, job: int | str = "JOB", round: int | str = "ROUND") -> str:
    """stage_launch_command as a person reads it (the UI shows it): this interpreter as `python` and the
    accelerate config relative to the repository, where the worker runs stages; the same argv otherwise."""
    argv = stage_launch_command(cfg, ["--db", str(db), "--job", str(job), "--round", str(round), "--stage", "train"])
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
