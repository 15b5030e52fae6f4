"""TRL's preference format: standard and conversational, explicit or implicit prompt."""

from __future__ import annotations

import os

from engine.data.importers.validation import (
    Parsed,
    RowCheck,
    ends_with_user,
    messages_field,
    pair_fields,
    prompt_field,
    text_field,
)
from storage.records import Messages


def trl_standard_explicit(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    prompt = prompt_field(rec, "prompt", chk, lists=False)
    if not answers:
        return None if prompt is None else Parsed(prompt)
    return pair_fields(
        prompt,
        text_field(rec, "chosen", chk),
        text_field(rec, "rejected", chk),
        ("chosen", "rejected"),
        chk,
        conversational=False,
    )


def trl_conversational_explicit(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    prompt = prompt_field(rec, "prompt", chk)
    if not answers:
        return None if prompt is None else Parsed(prompt, conversational=True)
    chosen = _assistant_turn(rec, "chosen", prompt, chk)
    rejected = _assistant_turn(rec, "rejected", prompt, chk)
    return pair_fields(prompt, chosen, rejected, ("chosen", "rejected"), chk, conversational=True)


def _assistant_turn(rec: dict, key: str, prompt: Messages | None, chk: RowCheck) -> str | None:
    """The answer of an explicit-prompt conversational pair; a copy of the prompt in front is tolerated."""
    msgs = messages_field(rec, key, chk)
    if msgs is None:
        return None
    if prompt and len(msgs) > len(prompt) and msgs[: len(prompt)] == prompt:
        msgs = msgs[len(prompt) :]
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        got = ", ".join(m["role"] for m in msgs)
        chk.fail(key, f"expected one assistant turn, got [{got}]")
        return None
    return msgs[0]["content"]


def conversation_split(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    """Implicit prompt: chosen and rejected are whole conversations that differ only in the last turn."""
    chosen = _conversation(rec, "chosen", chk)
    rejected = _conversation(rec, "rejected", chk) if answers else None
    if chosen is None:
        return None
    prompt = chosen[:-1]
    if not ends_with_user(prompt, "chosen", chk):
        return None
    if not answers:
        return Parsed(prompt, conversational=True)
    if rejected is None:
        return None
    if rejected[:-1] != prompt:
        at = next((i for i, (a, b) in enumerate(zip(prompt, rejected)) if a != b), min(len(prompt), len(rejected) - 1))
        chk.fail(
            "rejected",
            f"differs from 'chosen' before the final turn (at message {at}); "
            "both must share the prompt and differ only in the last assistant turn",
        )
        return None
    return pair_fields(
        prompt, chosen[-1]["content"], rejected[-1]["content"], ("chosen", "rejected"), chk, conversational=True
    )


def _conversation(rec: dict, key: str, chk: RowCheck) -> Messages | None:
    msgs = messages_field(rec, key, chk)
    if msgs is None:
        return None
    if msgs[-1]["role"] != "assistant":
        chk.fail(key, f"a conversation must end with the assistant's answer, but it ends with {msgs[-1]['role']}")
        return None
    return msgs


def trl_standard_implicit(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    """Implicit prompt in plain text: the shared start of chosen and rejected, cut at a word boundary."""
    chosen, rejected = text_field(rec, "chosen", chk), text_field(rec, "rejected", chk)
    if chosen is None or rejected is None:
        return None
    if chosen.strip() == rejected.strip():
        chk.fail("rejected", "same text as 'chosen': a pair needs two different answers")
        return None
    cut = _shared_start(chosen, rejected)
    prompt_text = chosen[:cut].strip()
    if not prompt_text:
        chk.fail(
            "chosen", "chosen and rejected share no prompt text (the implicit-prompt format needs a common start)"
        )
        return None
    prompt = [{"role": "user", "content": prompt_text}]
    if not answers:
        return Parsed(prompt)
    return pair_fields(prompt, chosen[cut:], rejected[cut:], ("chosen", "rejected"), chk, conversational=False)


def _shared_start(a: str, b: str) -> int:
    """Length of the common prefix, moved back so it does not end inside a word."""
    cut = len(os.path.commonprefix([a, b]))
    at_boundary = cut == 0 or a[cut - 1].isspace() or all(cut == len(s) or s[cut].isspace() for s in (a, b))
    if at_boundary:
        return cut
    return max((i + 1 for i in range(cut - 1, -1, -1) if a[i].isspace()), default=0)
