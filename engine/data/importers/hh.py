"""Anthropic HH transcripts: `\n\nHuman: ... \n\nAssistant: ...` in chosen and rejected."""

from __future__ import annotations

from engine.data.importers.detect import HH_TURN
from engine.data.importers.validation import Parsed, RowCheck, pair_fields, text_field
from storage.records import Messages


def hh_transcript(rec: dict, chk: RowCheck, answers: bool) -> Parsed | None:
    """Anthropic HH: the prompt is the transcript up to its last Assistant turn, the answer that turn.

    Some published HH rows are defective (an empty final turn, an answer that repeats the question, or chosen and
    rejected transcripts that part before the final turn); those rows are skipped and reported, not fatal, so
    the canonical data imports. In every other format an answer that repeats the prompt refuses the file."""
    chosen = text_field(rec, "chosen", chk)
    rejected = text_field(rec, "rejected", chk) if answers else None
    chosen_split = _hh_split(chosen, "chosen", chk) if chosen is not None else None
    if not answers:
        ok = chosen_split is not None and _hh_prompt_ok(chosen_split[0], "chosen", chk)
        return Parsed(chosen_split[0]) if ok else None
    rejected_split = _hh_split(rejected, "rejected", chk) if rejected is not None else None
    if chosen_split is None or rejected_split is None:
        return None
    (prompt, chosen_answer), (rejected_prompt, rejected_answer) = chosen_split, rejected_split
    if rejected_prompt != prompt:
        chk.skip("rejected", "the chosen and rejected transcripts differ before the final Assistant turn; row skipped")
        return None
    if not _hh_prompt_ok(prompt, "chosen", chk):
        return None
    for key, answer in (("chosen", chosen_answer), ("rejected", rejected_answer)):
        if not answer:
            chk.skip(key, "the final Assistant turn is empty; row skipped")
            return None
        if answer == prompt[-1]["content"]:
            chk.skip(key, "the final Assistant turn repeats the Human turn before it; row skipped")
            return None
    return pair_fields(prompt, chosen_answer, rejected_answer, ("chosen", "rejected"), chk, conversational=False)


def _hh_split(text: str, key: str, chk: RowCheck) -> tuple[Messages, str] | None:
    parts = HH_TURN.split("\n\n" + text.lstrip())
    if parts[0].strip() or len(parts) < 3:
        chk.fail(key, "not an HH transcript: expected '\\n\\nHuman: ...\\n\\nAssistant: ...'")
        return None
    turns = [("user" if who == "Human" else "assistant", said.strip()) for who, said in zip(parts[1::2], parts[2::2])]
    if turns[-1][0] != "assistant":
        chk.fail(key, "the transcript must end with an Assistant turn")
        return None
    prompt: Messages = []
    for role, content in turns[:-1]:
        if prompt and prompt[-1]["role"] == role:  # roles must alternate for chat templates
            prompt[-1]["content"] = f"{prompt[-1]['content']}\n\n{content}".strip()
        else:
            prompt.append({"role": role, "content": content})
    if any(not m["content"] for m in prompt):
        chk.fail(key, "the transcript has an empty turn before the final answer")
        return None
    return prompt, turns[-1][1]


def _hh_prompt_ok(prompt: Messages, key: str, chk: RowCheck) -> bool:
    """Two Assistant turns in a row before the answer is a known HH defect: skip the row, do not fail the file."""
    if prompt[0]["role"] != "user":
        chk.fail(key, "the transcript must start with a Human turn")
        return False
    if prompt[-1]["role"] != "user":
        chk.skip(key, "two Assistant turns in a row at the end of the transcript; row skipped")
        return False
    return True
