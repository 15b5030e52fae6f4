"""What a running stage needs around it: progress with ETA, a stop flag, logging and metrics into storage."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from engine.config import RunConfig
from engine.runtime.distributed import Ranks, any_rank
from engine.runtime.run_folder import run_dir
from storage import Metric, Store


class Stopped(Exception):
    """Raised inside a stage when a stop was asked for; the stage leaves nothing half-written."""


@dataclass
class StopFlag:
    event: threading.Event = field(default_factory=threading.Event)

    def install_signal_handler(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        signal.signal(signal.SIGINT, lambda *_: self.event.set())

    @property
    def is_set(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Stopped()


@dataclass
class JobProgress:
    """Throttled writes of one stage's progress and ETA into its job row; also the point where a stop is
    noticed. Shared by SPA stages and export jobs, so progress and ETA mean the same everywhere. A rank other
    than 0 of a multi-process stage only checks for a stop (`write` False): its shard is as far as rank 0's."""

    store: Store
    job_id: int
    round: int
    stage: str
    stop: StopFlag
    min_interval_s: float = 0.5
    write: bool = True
    _started: float = field(default_factory=time.monotonic)
    _last_write: float = 0.0

    def __call__(self, done: int, total: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.write and (force or done >= total or now - self._last_write > self.min_interval_s):
            elapsed = now - self._started
            eta = elapsed / done * (total - done) if done else None
            self.store.update_job(
                self.job_id, stage=self.stage, round=self.round, progress_done=done, progress_total=total, eta_s=eta
            )
            self._last_write = now
        self.stop.check()


@dataclass
class StageContext:
    store: Store
    job_id: int
    project_id: int
    cfg: RunConfig
    round: int
    stage: str
    stop: StopFlag = field(default_factory=StopFlag)
    echo: bool = False  # also print log lines (headless runs)
    ranks: Ranks = field(default_factory=Ranks)  # a multi-process stage: only rank 0 logs, reports and saves
    _progress: JobProgress = field(init=False)

    def __post_init__(self) -> None:
        self._progress = JobProgress(
            self.store, self.job_id, self.round, self.stage, self.stop, write=self.ranks.is_main
        )

    @property
    def out_dir(self) -> Path:
        """The config's output_dir, or runs/<project>/job_<id> so that two runs never share a folder."""
        return run_dir(self.cfg, self.store.path, self.job_id)

    def round_dir(self, round: int) -> Path:
        return self.out_dir / f"round_{round}"

    def log(self, message: str, level: str = "info") -> None:
        if not self.ranks.is_main:
            return
        self.store.log(self.job_id, f"[round {self.round} {self.stage}] {message}", level)
        if self.echo:
            print(f"[round {self.round} {self.stage}] {message}", flush=True)

    def progress(self, done: int, total: int, force: bool = False) -> None:
        """Throttled write of stage progress and ETA; also the point where a stop is noticed."""
        self._progress(done, total, force)

    def metrics(self, values: dict[str, float], step: int = 0) -> None:
        if not self.ranks.is_main:
            return
        self.store.add_metrics(
            [
                Metric(job_id=self.job_id, name=k, value=float(v), step=step, round=self.round, stage=self.stage)
                for k, v in values.items()
                if v is not None
            ]
        )


TRAIN_METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "noise/flagged_fraction",
    "grad_norm",
    "learning_rate",
)


class StageCallback(TrainerCallback):
    """Streams the trainer's logs into metrics, reports progress, and stops training when asked."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: v for k, v in (logs or {}).items() if k in TRAIN_METRICS and isinstance(v, (int, float))}
        if values:
            self.ctx.metrics({f"train/{k}": v for k, v in values.items()}, step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        stopped = False
        try:
            self.ctx.progress(state.global_step, state.max_steps)
        except Stopped:
            stopped = True
        if any_rank(stopped, self.ctx.ranks):  # every rank ends at the same step
            control.should_training_stop = True
        return control
