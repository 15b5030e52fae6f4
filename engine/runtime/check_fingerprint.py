"""The fingerprint of a judge-check: what its figures depend on, so a run with `judge.kind: auto` can reuse a check
stored before (by a judge-check job or another run) instead of cross-fitting again. Apart from judge_check and
auto_judge, which both need it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import RunConfig


def fingerprint(cfg: RunConfig, pairs: Sequence) -> float:
    """What a check's figures depend on, as one number a metric holds exactly (52 bits of a SHA-256): the set of
    labelled pairs (judge_check.LabelledPair: prompt, chosen, rejected), in any order, and the settings its seed
    DPO runs with. Folds and epochs given to a check are not part of it: a person who chose a quicker check chose
    that fidelity."""
    labelled = sorted(json.dumps([p.prompt, p.chosen, p.rejected], sort_keys=True) for p in pairs)
    settings = [cfg.model, cfg.beta, cfg.seed, cfg.learning_rate, cfg.epochs, cfg.batch_size, cfg.lr_scheduler]
    settings += [cfg.warmup_ratio, asdict(cfg.lora), cfg.dtype]
    digest = hashlib.sha256(json.dumps([labelled, settings], sort_keys=True).encode()).hexdigest()
    return float(int(digest[:13], 16))
