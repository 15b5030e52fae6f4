"""Pairs in named columns: alpaca-style instruction/input/chosen/rejected, prompt/answer1/answer2 with a
choice column, AutoTrain's prompt/text/rejected_text."""

from __future__ import annotations

from engine.data.importers.validation import (
    Parsed,
    RowCheck,
    missing,
    pair_fields,
    present,
    preview,
    prompt_field,
    text_field,
    value_kind,
)

_CHOICES = {"1": 1, "2": 2, "1.0": 1, "2.0": 2, "answer1": 1, "answer2": 2, "a": 1, "b": 2}


def alpaca(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    instruction = text_field(rec, "instruction", chk)
    extra = rec.get("input")
    if missing(extra):
        extra = ""
    elif not isinstance(extra, str):
        chk.fail("input", f"expected text, got {value_kind(extra)}")
        return None
    if instruction is None:
        return None
    prompt = [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra.strip() else instruction}]
    if not answers:
        return Parsed(prompt)
    return pair_fields(
        prompt,
        text_field(rec, "chosen", chk),
        text_field(rec, "rejected", chk),
        ("chosen", "rejected"),
        chk,
        conversational=False,
    )


def answer_choice(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    prompt = prompt_field(rec, "prompt", chk)
    conversational = isinstance(rec.get("prompt"), list)
    if not answers:
        return None if prompt is None else Parsed(prompt, conversational=conversational)
    first, second = text_field(rec, "answer1", chk), text_field(rec, "answer2", chk)
    pick = _choice(rec, chk)
    if pick == 2:
        return pair_fields(prompt, second, first, ("answer2", "answer1"), chk, conversational=conversational)
    return pair_fields(prompt, first, second, ("answer1", "answer2"), chk, conversational=conversational)


def _choice(rec: dict, chk: RowCheck) -> int | None:
    if not present(rec, "choice", chk):
        return None
    value = rec["choice"]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (1, 2):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _CHOICES:
        return _CHOICES[value.strip().lower()]
    chk.fail("choice", f"expected 1 or 2, 'answer1' or 'answer2', 'a' or 'b'; got {preview(value)}")
    return None


def autotrain(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    prompt = prompt_field(rec, "prompt", chk)
    conversational = isinstance(rec.get("prompt"), list)
    if not answers:
        return None if prompt is None else Parsed(prompt, conversational=conversational)
    return pair_fields(
        prompt,
        text_field(rec, "text", chk),
        text_field(rec, "rejected_text", chk),
        ("text", "rejected_text"),
        chk,
        conversational=conversational,
    )
