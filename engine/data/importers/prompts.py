"""Prompt pools: plain prompts or chat messages, the prompt alone."""

from __future__ import annotations

from engine.data.importers.validation import (
    Parsed,
    RowCheck,
    ends_with_user,
    messages_field,
    prompt_field,
)


def prompts_only(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    """A pool prompt. A `messages` conversation is cut after its last user turn (SFT data ends with answers)."""
    if "prompt" in rec:
        prompt = prompt_field(rec, "prompt", chk)
        return None if prompt is None else Parsed(prompt, conversational=isinstance(rec["prompt"], list))
    msgs = messages_field(rec, "messages", chk)
    if msgs is None:
        return None
    while msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return Parsed(msgs, conversational=True) if ends_with_user(msgs, "messages", chk) else None
