"""What an export request says and what it resolves to, passed between the export's steps: the request, a
run's exportable model, a dataset row, what a model card says about its run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.config import RunConfig
from storage.records import Messages

Progress = Callable[[str, int, int], None]


WHATS = ("model", "adapter", "dataset")


FORMATS = ("jsonl", "parquet", "hf")


DATA_FILES = {"jsonl": "train.jsonl", "parquet": "train.parquet"}


class ExportError(Exception):
    """A request the export refuses; nothing was written."""


@dataclass
class ExportRequest:
    project: str
    what: str  # model | adapter | dataset
    out: str
    round: int | None = None  # model/adapter: which round (default the last)
    format: str = "jsonl"  # dataset: jsonl | parquet | hf
    force: bool = False  # replace a non-empty `out`
    rounds: list[int] | None = None  # dataset filters
    sources: list[str] | None = None
    min_confidence: float | None = None
    exclude_noisy: bool = False
    job_id: int | None = None  # which run (default: the project's latest run with artifacts)
    seed_ordered_pairs: bool = False  # dataset: every ordered pair of each ranked seed prompt (best over each
    # middle answer over worst), not only best over worst
    max_shard_size: int | str = "5GB"  # merged model: safetensors shards past this size
    root: str | None = None  # the export must land under this folder (checked after resolving); None: anywhere


@dataclass
class RunModel:
    """One exportable round of one run: what `exportable` lists and what a model export reads."""

    job_id: int
    round: int
    kind: str  # adapter | model
    path: str
    base_model: str

    def as_dict(self) -> dict:
        whats = ["model", "adapter"] if self.kind == "adapter" else ["model"]
        return {
            "job_id": self.job_id,
            "round": self.round,
            "kind": self.kind,
            "path": self.path,
            "base_model": self.base_model,
            "exists": Path(self.path).is_dir(),
            "exports": whats,
        }


@dataclass
class PreferenceRow:
    prompt: Messages
    chosen: str
    rejected: str
    round: int
    source: str
    confidence: float | None
    chosen_score: float | None
    rejected_score: float | None
    noisy: bool
    labelled_by: str | None = None  # the person whose label is in force (None: seed or self label)
    labels_by_person: list[dict] = field(default_factory=list)  # [{"person", "label"}]: each person's latest label
    job_id: int | None = None  # the run the pair comes from (None: a seed pair); the card reads it, no column

    def record(self, conversational: bool) -> dict:
        if conversational:
            prompt, chosen, rejected = self.prompt, assistant_message(self.chosen), assistant_message(self.rejected)
        else:
            prompt, chosen, rejected = self.prompt[0]["content"], self.chosen, self.rejected
        return {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "round": self.round,
            "source": self.source,
            "confidence": self.confidence,
            "chosen_score": self.chosen_score,
            "rejected_score": self.rejected_score,
            "noisy": self.noisy,
            "labelled_by": self.labelled_by,
            "labels_by_person": self.labels_by_person,
        }


@dataclass
class RunCard:
    """What a model card says about the run a model came from."""

    project: str
    job_id: int
    round: int
    base_model: str
    cfg: RunConfig | None
    label_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)


def assistant_message(text: str) -> Messages:
    return [{"role": "assistant", "content": text}]
