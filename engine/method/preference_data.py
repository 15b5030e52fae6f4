"""The training pairs as the trainer reads them: each row tokenised once by engine.method.encoding (the very ids
the judge scored) and a collator that left-pads them as engine.method.scoring does, so every response ends at the
last position."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from engine.method.encoding import prompt_ids, response_ids
from engine.method.scoring import left_pad, right_pad
from storage.records import Messages

logger = logging.getLogger(__name__)


@dataclass
class TrainRow:
    pair_id: int | None  # None for seed examples
    prompt: Messages
    chosen: str
    rejected: str
    ref_chosen_logp: float | None = None  # stored reference log-probs; None: a reference forward computes them
    ref_rejected_logp: float | None = None
    trusted: bool = False  # human/gold/seed label: ỹ = 1, never flagged


def encode_rows(tokenizer, rows: Sequence[TrainRow], max_length: int | None = None) -> Dataset:
    """Rows as ids from engine.method.encoding, one record per pair. Missing stored log-probs become NaN.

    With `max_length`, sequences keep their start (TRL's "keep_start"): responses lose their tail, a truncated
    pair's stored log-probs (computed on the whole responses) are dropped so a reference forward recomputes them,
    and a pair whose prompt alone fills `max_length` is left out."""
    records, dropped = [], 0
    for row in rows:
        p = prompt_ids(tokenizer, row.prompt)
        if not p:
            raise ValueError("a prompt encodes to no tokens; there is nothing to condition the response on")
        c, r = response_ids(tokenizer, row.chosen), response_ids(tokenizer, row.rejected)
        ref_c = math.nan if row.ref_chosen_logp is None else float(row.ref_chosen_logp)
        ref_r = math.nan if row.ref_rejected_logp is None else float(row.ref_rejected_logp)
        if max_length is not None:
            if len(p) >= max_length:
                dropped += 1
                continue
            room = max_length - len(p)
            if len(c) > room or len(r) > room:
                ref_c = ref_r = math.nan
                c, r = c[:room], r[:room]
        records.append(
            dict(
                prompt_ids=p,
                chosen_ids=c,
                rejected_ids=r,
                length=len(p) + max(len(c), len(r)),
                ref_chosen_logps=ref_c,
                ref_rejected_logps=ref_r,
                trusted=bool(row.trusted),
                pair_id=-1 if row.pair_id is None else int(row.pair_id),
            )
        )
    if dropped:
        logger.warning("%d pairs left out: their prompt alone fills max_length=%s", dropped, max_length)
    if not records:
        raise ValueError("there are no pairs to train on")
    return Dataset.from_list(records)


@dataclass
class LeftPaddedPreferenceCollator:
    """Chosen sequences then rejected ones, LEFT-padded as in scoring so that every response ends at the last
    position; position ids follow the attention mask, so padding changes nothing. The same batch also comes split,
    prompts (left-padded) apart from the responses (right-padded), for the forward that runs each prompt once."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [e["prompt_ids"] + e["chosen_ids"] for e in examples]
        sequences += [e["prompt_ids"] + e["rejected_ids"] for e in examples]
        lengths = [len(e["chosen_ids"]) for e in examples] + [len(e["rejected_ids"]) for e in examples]
        input_ids, attention_mask = left_pad(sequences, self.pad_token_id)
        response_mask = torch.zeros_like(attention_mask)
        for row, n in enumerate(lengths):
            response_mask[row, response_mask.shape[1] - n :] = 1
        prompts, prompt_mask = left_pad([e["prompt_ids"] for e in examples], self.pad_token_id)
        responses, responses_mask = right_pad(
            [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples], self.pad_token_id
        )
        return dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
            response_mask=response_mask,
            prompt_ids=prompts,
            prompt_mask=prompt_mask,
            responses=responses,
            responses_mask=responses_mask,
            ref_chosen_logps=torch.tensor([e["ref_chosen_logps"] for e in examples], dtype=torch.float64),
            ref_rejected_logps=torch.tensor([e["ref_rejected_logps"] for e in examples], dtype=torch.float64),
            trusted=torch.tensor([e["trusted"] for e in examples], dtype=torch.bool),
            pair_id=torch.tensor([e["pair_id"] for e in examples], dtype=torch.long),
        )
