"""Which format a row is in, recognised from its columns, and which formats share a file."""

from __future__ import annotations

import re

PROMPT_ONLY_FORMATS = ("prompts-text", "prompts-messages")


HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]*")


KNOWN_COLUMNS = (
    "prompt/chosen/rejected (TRL), chosen/rejected (TRL implicit prompt or HH transcripts), "
    "prompt/chosen/rejected/score_chosen/score_rejected (UltraFeedback), instruction/input/chosen/rejected "
    "(alpaca), prompt/answer1/answer2/choice, prompt/text/rejected_text (AutoTrain), prompt or messages (pool)"
)


def detect_format(record: dict) -> str | None:
    """The format a single row is in, from its columns (and, where columns are shared, the value types)."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if {"chosen", "rejected"} <= keys and keys & {"score_chosen", "score_rejected"}:
        return "ultrafeedback-binarized"
    if keys & {"answer1", "answer2", "choice"}:
        return "answer1-answer2-choice"
    if "rejected_text" in keys or {"prompt", "text"} <= keys:
        return "autotrain"
    if "instruction" in keys:
        return "alpaca"
    if keys & {"chosen", "rejected"}:
        if "prompt" in keys:
            values = (record.get("prompt"), record.get("chosen"), record.get("rejected"))
            conversational = any(isinstance(v, list) for v in values)
            return "trl-conversational-explicit" if conversational else "trl-standard-explicit"
        sample = record.get("chosen", record.get("rejected"))
        if looks_hh(sample):
            return "hh-transcript"
        return "trl-conversational-implicit" if isinstance(sample, list) else "trl-standard-implicit"
    if "prompt" in keys:
        return "prompts-messages" if isinstance(record["prompt"], list) else "prompts-text"
    if "messages" in keys:
        return "prompts-messages"
    return None


def looks_hh(value: object) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("Human:") and "\n\nAssistant:" in value


# Formats that share columns and differ only in value types: a row of another member is parsed under
# the file's format (to get a typed, per-field error) rather than reported as a different format.
_FAMILY = {
    "trl-standard-explicit": "explicit",
    "trl-conversational-explicit": "explicit",
    "trl-standard-implicit": "implicit",
    "trl-conversational-implicit": "implicit",
    "hh-transcript": "implicit",
    "prompts-text": "prompts",
    "prompts-messages": "prompts",
}


def compatible(found: str, file_format: str) -> bool:
    """Whether a row detected as `found` is parsed under the file's format (to get a typed, per-field
    error) rather than refused as a different format. A transcript row never passes for plain text."""
    if found == file_format:
        return True
    if found == "hh-transcript":
        return False
    return _FAMILY.get(found, found) == _FAMILY.get(file_format, file_format)
