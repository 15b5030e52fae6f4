"""Data import for the three roles: seed pairs, the prompt pool and eval pairs.

People arrive with files in the formats the Hugging Face ecosystem already uses, so the format is
recognised from the columns instead of being asked for, and every row is normalised to an `Example`.
Import is all-or-nothing: every problem is collected with the file, line (or row) and field it is in,
and the whole file is refused, so a half-imported seed set can never silently skew a run.

Where `Example.source_line` (and `ImportIssue.line`) points, by file type:
  JSONL        1-based physical line (blank lines count as lines but are not rows)
  JSON         1-based index of the element in the top-level array (`unit` "element")
  CSV          1-based data row, the header not counted (`unit` "row")
  Parquet, datasets directory   1-based row index (`unit` "row")
Problems found before rows exist (a JSON syntax error, a CSV tokenising error) name the physical line.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from storage.records import ROLES, Example, Messages

MAX_ISSUES = 50  # enough to see a pattern, few enough to read
SHOWN_ISSUES = 10
CHAT_ROLES = ("system", "user", "assistant")
PROMPT_ONLY_FORMATS = ("prompts-text", "prompts-messages")

_SURROGATE = re.compile("[\ud800-\udfff]")  # what undecodable bytes become under surrogateescape
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]*")
_CHOICES = {"1": 1, "2": 2, "1.0": 1, "2.0": 2, "answer1": 1, "answer2": 2, "a": 1, "b": 2}
_FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_KNOWN_COLUMNS = (
    "prompt/chosen/rejected (TRL), chosen/rejected (TRL implicit prompt or HH transcripts), "
    "prompt/chosen/rejected/score_chosen/score_rejected (UltraFeedback), instruction/input/chosen/rejected "
    "(alpaca), prompt/answer1/answer2/choice, prompt/text/rejected_text (AutoTrain), prompt or messages (pool)"
)


@dataclass
class ImportIssue:
    """One problem (or one skipped row), located so a person can open the file and find it."""
    file: str
    line: int | None
    field: str | None
    message: str
    unit: str = "line"  # what `line` counts: "line", "row" (CSV, Parquet, datasets) or "element" (JSON)

    def __str__(self) -> str:
        if self.line is None:
            where = self.file
        elif self.unit == "line":
            where = f"{self.file}:{self.line}"
        else:
            where = f"{self.file} {self.unit} {self.line}"
        if self.field is None:
            return f"{where}: {self.message}"
        return f"{where}: field '{self.field}': {self.message}"


class ImportFailed(Exception):
    """The file was refused; `.issues` holds every problem found (at most MAX_ISSUES)."""

    def __init__(self, issues: Iterable[ImportIssue]):
        self.issues = list(issues)
        super().__init__(self.summary())

    def summary(self) -> str:
        lines = [str(issue) for issue in self.issues[:SHOWN_ISSUES]]
        hidden = len(self.issues) - SHOWN_ISSUES
        if hidden > 0:
            lines.append(f"... and {hidden} more")
        if len(self.issues) >= MAX_ISSUES:
            lines.append(f"(stopped reading after {MAX_ISSUES} problems)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass
class ImportResult:
    examples: list[Example]
    format: str
    duplicates: list[ImportIssue] = field(default_factory=list)  # reported and skipped, first kept
    rows_read: int = 0
    skipped: list[ImportIssue] = field(default_factory=list)  # known-defective HH rows, reported


@dataclass
class _Row:
    line: int
    record: dict


@dataclass
class _Source:
    """Rows of one file, or problems met while reading it, in file order."""
    items: Iterable[_Row | ImportIssue]
    unit: str
    note: str = ""  # which part of the file was read, e.g. the split of a DatasetDict


@dataclass
class _Parsed:
    prompt: Messages
    chosen: str | None = None
    rejected: str | None = None
    conversational: bool = False


@dataclass
class _Check:
    """Collects the problems of one row, so every message carries file, row and field."""
    file: str
    line: int
    unit: str
    issues: list[ImportIssue] = field(default_factory=list)
    skips: list[ImportIssue] = field(default_factory=list)

    def fail(self, field_name: str | None, message: str) -> None:
        self.issues.append(ImportIssue(self.file, self.line, field_name, message, self.unit))

    def skip(self, field_name: str | None, message: str) -> None:
        self.skips.append(ImportIssue(self.file, self.line, field_name, message, self.unit))


# ---------------------------------------------------------------------------------------------
# Format detection


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
        if _looks_hh(sample):
            return "hh-transcript"
        return "trl-conversational-implicit" if isinstance(sample, list) else "trl-standard-implicit"
    if "prompt" in keys:
        return "prompts-messages" if isinstance(record["prompt"], list) else "prompts-text"
    if "messages" in keys:
        return "prompts-messages"
    return None


def _looks_hh(value: object) -> bool:
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


def _compatible(found: str, file_format: str) -> bool:
    """Whether a row detected as `found` is parsed under the file's format (to get a typed, per-field
    error) rather than refused as a different format. A transcript row never passes for plain text."""
    if found == file_format:
        return True
    if found == "hh-transcript":
        return False
    return _FAMILY.get(found, found) == _FAMILY.get(file_format, file_format)


# ---------------------------------------------------------------------------------------------
# Value checks shared by the format parsers


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _kind(value: object) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _present(rec: dict, key: str, chk: _Check) -> bool:
    if key not in rec:
        chk.fail(key, "missing required column")
        return False
    if _missing(rec[key]):
        chk.fail(key, "missing value (empty cell, null or NaN)")
        return False
    return True


def _text(rec: dict, key: str, chk: _Check) -> str | None:
    if not _present(rec, key, chk):
        return None
    value = rec[key]
    if not isinstance(value, str):
        chk.fail(key, f"expected text, got {_kind(value)}")
        return None
    if not value.strip():
        chk.fail(key, "empty")
        return None
    return value


def _messages(rec: dict, key: str, chk: _Check) -> Messages | None:
    """A list of {role, content} turns, normalised to exactly those two keys."""
    if not _present(rec, key, chk):
        return None
    value = rec[key]
    if not isinstance(value, list):
        chk.fail(key, f"expected a list of messages, got {_kind(value)}")
        return None
    if not value:
        chk.fail(key, "empty message list")
        return None
    out: Messages = []
    before = len(chk.issues)
    for i, msg in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(msg, dict):
            chk.fail(where, f"expected a message object with role and content, got {_kind(msg)}")
            continue
        role, content = msg.get("role"), msg.get("content")
        if _missing(role):
            chk.fail(f"{where}.role", "missing")
        elif role not in CHAT_ROLES:
            chk.fail(f"{where}.role", f"unknown role {_preview(role)} (expected system, user or assistant)")
        if _missing(content):
            chk.fail(f"{where}.content", "missing")
        elif not isinstance(content, str):
            chk.fail(f"{where}.content", f"expected text, got {_kind(content)}")
        elif not content.strip():
            chk.fail(f"{where}.content", "empty")
        out.append({"role": role, "content": content})
    return out if len(chk.issues) == before else None


def _ends_with_user(prompt: Messages, key: str, chk: _Check) -> bool:
    if not prompt or prompt[-1]["role"] != "user":
        last = prompt[-1]["role"] if prompt else "nothing"
        chk.fail(key, f"the prompt must end with the user's turn, but it ends with {last}")
        return False
    return True


def _prompt(rec: dict, key: str, chk: _Check, *, lists: bool = True) -> Messages | None:
    """A prompt given as plain text (one user turn) or, where the format allows, as chat messages."""
    if not _present(rec, key, chk):
        return None
    value = rec[key]
    if isinstance(value, list) and lists:
        msgs = _messages(rec, key, chk)
        return msgs if msgs is not None and _ends_with_user(msgs, key, chk) else None
    if isinstance(value, str):
        text = _text(rec, key, chk)
        return None if text is None else [{"role": "user", "content": text}]
    chk.fail(key, f"expected {'text or a list of messages' if lists else 'text'}, got {_kind(value)}")
    return None


def _pair(prompt: Messages | None, chosen: str | None, rejected: str | None, keys: tuple[str, str],
          chk: _Check, *, conversational: bool) -> _Parsed | None:
    """The final, stripped answers; refuses empty answers and a pair with nothing to prefer."""
    if prompt is None or chosen is None or rejected is None:
        return None
    chosen, rejected = chosen.strip(), rejected.strip()
    for key, answer in zip(keys, (chosen, rejected)):
        if not answer:
            chk.fail(key, "empty answer")
    if chosen and chosen == rejected:
        chk.fail(keys[1], f"same text as '{keys[0]}': a pair needs two different answers")
    if chk.issues:
        return None
    return _Parsed(prompt, chosen, rejected, conversational)


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# One parser per format: (record, check, answers wanted) -> normalised row, or None with the reasons in check


def _trl_standard_explicit(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    prompt = _prompt(rec, "prompt", chk, lists=False)
    if not answers:
        return None if prompt is None else _Parsed(prompt)
    return _pair(prompt, _text(rec, "chosen", chk), _text(rec, "rejected", chk), ("chosen", "rejected"), chk,
                 conversational=False)


def _trl_conversational_explicit(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    prompt = _prompt(rec, "prompt", chk)
    if not answers:
        return None if prompt is None else _Parsed(prompt, conversational=True)
    chosen = _assistant_turn(rec, "chosen", prompt, chk)
    rejected = _assistant_turn(rec, "rejected", prompt, chk)
    return _pair(prompt, chosen, rejected, ("chosen", "rejected"), chk, conversational=True)


def _assistant_turn(rec: dict, key: str, prompt: Messages | None, chk: _Check) -> str | None:
    """The answer of an explicit-prompt conversational pair; a copy of the prompt in front is tolerated."""
    msgs = _messages(rec, key, chk)
    if msgs is None:
        return None
    if prompt and len(msgs) > len(prompt) and msgs[: len(prompt)] == prompt:
        msgs = msgs[len(prompt):]
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        got = ", ".join(m["role"] for m in msgs)
        chk.fail(key, f"expected one assistant turn, got [{got}]")
        return None
    return msgs[0]["content"]


def _conversation_split(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    """Implicit prompt: chosen and rejected are whole conversations that differ only in the last turn."""
    chosen = _conversation(rec, "chosen", chk)
    rejected = _conversation(rec, "rejected", chk) if answers else None
    if chosen is None:
        return None
    prompt = chosen[:-1]
    if not _ends_with_user(prompt, "chosen", chk):
        return None
    if not answers:
        return _Parsed(prompt, conversational=True)
    if rejected is None:
        return None
    if rejected[:-1] != prompt:
        at = next((i for i, (a, b) in enumerate(zip(prompt, rejected)) if a != b), min(len(prompt), len(rejected) - 1))
        chk.fail("rejected", f"differs from 'chosen' before the final turn (at message {at}); "
                             "both must share the prompt and differ only in the last assistant turn")
        return None
    return _pair(prompt, chosen[-1]["content"], rejected[-1]["content"], ("chosen", "rejected"), chk,
                 conversational=True)


def _conversation(rec: dict, key: str, chk: _Check) -> Messages | None:
    msgs = _messages(rec, key, chk)
    if msgs is None:
        return None
    if msgs[-1]["role"] != "assistant":
        chk.fail(key, f"a conversation must end with the assistant's answer, but it ends with {msgs[-1]['role']}")
        return None
    return msgs


def _trl_standard_implicit(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    """Implicit prompt in plain text: the shared start of chosen and rejected, cut at a word boundary."""
    chosen, rejected = _text(rec, "chosen", chk), _text(rec, "rejected", chk)
    if chosen is None or rejected is None:
        return None
    if chosen.strip() == rejected.strip():
        chk.fail("rejected", "same text as 'chosen': a pair needs two different answers")
        return None
    cut = _shared_start(chosen, rejected)
    prompt_text = chosen[:cut].strip()
    if not prompt_text:
        chk.fail("chosen", "chosen and rejected share no prompt text (the implicit-prompt format needs a common start)")
        return None
    prompt = [{"role": "user", "content": prompt_text}]
    if not answers:
        return _Parsed(prompt)
    return _pair(prompt, chosen[cut:], rejected[cut:], ("chosen", "rejected"), chk, conversational=False)


def _shared_start(a: str, b: str) -> int:
    """Length of the common prefix, moved back so it does not end inside a word."""
    cut = len(os.path.commonprefix([a, b]))
    at_boundary = (cut == 0 or a[cut - 1].isspace()
                   or all(cut == len(s) or s[cut].isspace() for s in (a, b)))
    if at_boundary:
        return cut
    return max((i + 1 for i in range(cut - 1, -1, -1) if a[i].isspace()), default=0)


def _hh(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    """Anthropic HH: the prompt is the transcript up to its last Assistant turn, the answer that turn.

    Some published HH rows are defective (an empty final turn, or chosen and rejected transcripts that
    part before the final turn); those rows are skipped and reported, not fatal, so the canonical data
    imports."""
    chosen = _text(rec, "chosen", chk)
    rejected = _text(rec, "rejected", chk) if answers else None
    chosen_split = _hh_split(chosen, "chosen", chk) if chosen is not None else None
    if not answers:
        ok = chosen_split is not None and _hh_prompt_ok(chosen_split[0], "chosen", chk)
        return _Parsed(chosen_split[0]) if ok else None
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
    return _pair(prompt, chosen_answer, rejected_answer, ("chosen", "rejected"), chk, conversational=False)


def _hh_split(text: str, key: str, chk: _Check) -> tuple[Messages, str] | None:
    parts = _HH_TURN.split("\n\n" + text.lstrip())
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


def _hh_prompt_ok(prompt: Messages, key: str, chk: _Check) -> bool:
    """Two Assistant turns in a row before the answer is a known HH defect: skip the row, do not fail the file."""
    if prompt[0]["role"] != "user":
        chk.fail(key, "the transcript must start with a Human turn")
        return False
    if prompt[-1]["role"] != "user":
        chk.skip(key, "two Assistant turns in a row at the end of the transcript; row skipped")
        return False
    return True


def _alpaca(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    instruction = _text(rec, "instruction", chk)
    extra = rec.get("input")
    if _missing(extra):
        extra = ""
    elif not isinstance(extra, str):
        chk.fail("input", f"expected text, got {_kind(extra)}")
        return None
    if instruction is None:
        return None
    prompt = [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra.strip() else instruction}]
    if not answers:
        return _Parsed(prompt)
    return _pair(prompt, _text(rec, "chosen", chk), _text(rec, "rejected", chk), ("chosen", "rejected"), chk,
                 conversational=False)


def _answer_choice(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    prompt = _prompt(rec, "prompt", chk)
    conversational = isinstance(rec.get("prompt"), list)
    if not answers:
        return None if prompt is None else _Parsed(prompt, conversational=conversational)
    first, second = _text(rec, "answer1", chk), _text(rec, "answer2", chk)
    pick = _choice(rec, chk)
    if pick == 2:
        return _pair(prompt, second, first, ("answer2", "answer1"), chk, conversational=conversational)
    return _pair(prompt, first, second, ("answer1", "answer2"), chk, conversational=conversational)


def _choice(rec: dict, chk: _Check) -> int | None:
    if not _present(rec, "choice", chk):
        return None
    value = rec["choice"]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (1, 2):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _CHOICES:
        return _CHOICES[value.strip().lower()]
    chk.fail("choice", f"expected 1 or 2, 'answer1' or 'answer2', 'a' or 'b'; got {_preview(value)}")
    return None


def _autotrain(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    prompt = _prompt(rec, "prompt", chk)
    conversational = isinstance(rec.get("prompt"), list)
    if not answers:
        return None if prompt is None else _Parsed(prompt, conversational=conversational)
    return _pair(prompt, _text(rec, "text", chk), _text(rec, "rejected_text", chk), ("text", "rejected_text"), chk,
                 conversational=conversational)


def _prompts(rec: dict, chk: _Check, answers: bool) -> _Parsed | None:
    """A pool prompt. A `messages` conversation is cut after its last user turn (SFT data ends with answers)."""
    if "prompt" in rec:
        prompt = _prompt(rec, "prompt", chk)
        return None if prompt is None else _Parsed(prompt, conversational=isinstance(rec["prompt"], list))
    msgs = _messages(rec, "messages", chk)
    if msgs is None:
        return None
    while msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return _Parsed(msgs, conversational=True) if _ends_with_user(msgs, "messages", chk) else None


_PARSERS: dict[str, Callable[[dict, _Check, bool], _Parsed | None]] = {
    "trl-standard-explicit": _trl_standard_explicit,
    "trl-conversational-explicit": _trl_conversational_explicit,
    "trl-standard-implicit": _trl_standard_implicit,
    "trl-conversational-implicit": _conversation_split,
    "hh-transcript": _hh,
    "ultrafeedback-binarized": _conversation_split,
    "alpaca": _alpaca,
    "answer1-answer2-choice": _answer_choice,
    "autotrain": _autotrain,
    "prompts-text": _prompts,
    "prompts-messages": _prompts,
}


# ---------------------------------------------------------------------------------------------
# The import itself


def load_examples(path: str | Path, role: str) -> ImportResult:
    """Read a whole file as `role` (seed | pool | eval); raise ImportFailed listing every problem.

    Pools keep only the prompt of whatever format they come in; seed and eval need both answers.
    Duplicate rows (same prompt and answers; same prompt for pools) are reported and skipped."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    path = Path(path)
    name = str(path)
    source = _open(path, name)
    run = _Run(name, role, source.unit)
    for item in source.items:
        run.take(item)
        if run.stopped or len(run.issues) >= MAX_ISSUES:
            break
    return run.finish(source.note)


@dataclass
class _Run:
    """State of one import while rows stream in."""
    file: str
    role: str
    unit: str
    examples: list[Example] = field(default_factory=list)
    issues: list[ImportIssue] = field(default_factory=list)
    duplicates: list[ImportIssue] = field(default_factory=list)
    skipped: list[ImportIssue] = field(default_factory=list)
    seen: dict[tuple, int] = field(default_factory=dict)
    rows_read: int = 0
    format: str | None = None
    format_line: int = 0
    mixed_reported: bool = False
    stopped: bool = False

    def issue(self, line: int | None, field_name: str | None, message: str) -> None:
        self.issues.append(ImportIssue(self.file, line, field_name, message, self.unit))

    def take(self, item: _Row | ImportIssue) -> None:
        if isinstance(item, ImportIssue):
            self.issues.append(item)
            return
        self.rows_read += 1
        line, rec = item.line, item.record
        bad = _undecodable(rec)
        if bad is not None:
            where, char = bad
            self.issue(line, where, _not_utf8(char))
            return
        found = detect_format(rec)
        if self.format is None and not self._adopt(found, line, rec):
            return
        if found is not None and found not in PROMPT_ONLY_FORMATS and not _compatible(found, self.format):
            if not self.mixed_reported:
                self.mixed_reported = True
                self.issue(line, None, f"this row is in format {found}, but the file is {self.format} "
                                       f"(from {self.unit} {self.format_line}); one format per file")
            return
        chk = _Check(self.file, line, self.unit)
        parsed = _PARSERS[self.format](rec, chk, self.role != "pool")
        self.issues.extend(chk.issues)
        self.skipped.extend(chk.skips)
        if parsed is None or chk.issues or chk.skips:
            return
        self._keep(line, parsed)

    def _adopt(self, found: str | None, line: int, rec: dict) -> bool:
        """The first row decides the file's format."""
        if found is None:
            columns = ", ".join(str(k) for k in list(rec)[:20]) or "none"
            self.issue(line, None, f"unknown format: columns seen: {columns}; known column sets: {_KNOWN_COLUMNS}")
            self.stopped = True
            return False
        if found in PROMPT_ONLY_FORMATS and self.role != "pool":
            self.issue(line, "chosen", f"role '{self.role}' needs preference pairs (chosen and rejected), "
                                       f"but this file holds prompts only ({found})")
            self.stopped = True
            return False
        self.format, self.format_line = found, line
        return True

    def _keep(self, line: int, parsed: _Parsed) -> None:
        prompt_key = tuple((m["role"], m["content"]) for m in parsed.prompt)
        key = (prompt_key,) if self.role == "pool" else (prompt_key, parsed.chosen, parsed.rejected)
        if key in self.seen:
            what = "prompt" if self.role == "pool" else "prompt, chosen and rejected"
            self.duplicates.append(ImportIssue(self.file, line, None, f"same {what} as {self.unit} {self.seen[key]}; "
                                                                      "skipped", self.unit))
            return
        self.seen[key] = line
        pair = self.role != "pool"
        self.examples.append(Example(
            role=self.role, prompt=parsed.prompt, chosen=parsed.chosen if pair else None,
            rejected=parsed.rejected if pair else None, source_file=self.file, source_line=line,
            conversational=parsed.conversational,
        ))

    def finish(self, note: str) -> ImportResult:
        if not self.issues and self.rows_read == 0:
            self.issues.append(ImportIssue(self.file, None, None, "no rows: the file is empty", self.unit))
        elif not self.issues and not self.examples:
            self.issues.append(ImportIssue(self.file, None, None, "no usable rows: every row was skipped", self.unit))
        if self.issues:
            raise ImportFailed(self.issues[:MAX_ISSUES])
        name = f"{self.format} ({note})" if note else str(self.format)
        return ImportResult(self.examples, name, self.duplicates, self.rows_read, self.skipped)


def _undecodable(value: object, where: str = "") -> tuple[str, str] | None:
    """(field path, first bad char) where bytes that were not UTF-8 landed, or None."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return (where or None, found.group()) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            found = _SURROGATE.search(str(key))
            bad = (_printable(path), found.group()) if found else _undecodable(item, path)
            if bad:
                return bad
    if isinstance(value, list):
        for i, item in enumerate(value):
            bad = _undecodable(item, f"{where}[{i}]")
            if bad:
                return bad
    return None


def _not_utf8(char: str) -> str:
    return f"not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02X}); save the file as UTF-8"


def _printable(text: str) -> str:
    """Undecodable bytes shown as U+FFFD, so a message about them can itself be printed."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Readers: a path in, rows (or located read problems) out


def _refuse(name: str, message: str) -> ImportFailed:
    return ImportFailed([ImportIssue(name, None, None, message)])


def _open(path: Path, name: str) -> _Source:
    if not path.exists():
        raise _refuse(name, "no such file or directory")
    if path.is_dir():
        return _dataset_dir(path, name)
    lower = path.name.lower()
    compressed = lower.endswith(".gz")
    kind = _FILE_KINDS.get(Path(lower.removesuffix(".gz")).suffix)
    if kind is None or (compressed and kind == "parquet"):
        raise _refuse(name, "unsupported file type: use .jsonl, .json, .csv (optionally .gz), .parquet "
                            "or a directory written by datasets' save_to_disk")
    if kind == "jsonl":
        return _Source(_jsonl_rows(path, name), "line")
    if kind == "json":
        return _json_source(path, name)
    if kind == "csv":
        return _Source(_csv_rows(path, name), "row")
    return _Source(_parquet_rows(path, name), "row")


def _binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _jsonl_rows(path: Path, name: str) -> Iterator[_Row | ImportIssue]:
    """Line by line in binary, so a bad byte or a truncated line is named by its own line number."""
    line = 0
    try:
        with _binary(path) as fh:
            for line, raw in enumerate(fh, 1):
                text = raw.decode("utf-8", "surrogateescape")
                if line == 1:
                    text = text.removeprefix("\ufeff")
                if not text.strip():
                    continue
                yield _json_row(text, line, name, "line")
    except (EOFError, zlib.error) as exc:
        yield ImportIssue(name, line + 1, None, f"the compressed file is damaged or cut short here: {exc}")
    except OSError as exc:
        yield ImportIssue(name, None, None, f"cannot read the file: {exc}")


def _json_row(text: str, line: int, name: str, unit: str) -> _Row | ImportIssue:
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        bad = _SURROGATE.search(text)
        if bad:
            return ImportIssue(name, line, None, _not_utf8(bad.group()), unit)
        return ImportIssue(name, line, None, f"invalid JSON: {_json_error(exc)}; is the line cut short?", unit)
    except RecursionError:
        return ImportIssue(name, line, None, "invalid JSON: nested too deeply", unit)
    if not isinstance(rec, dict):
        return ImportIssue(name, line, None, f"expected a JSON object with columns, got {_kind(rec)}", unit)
    return _Row(line, rec)


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} column {exc.colno}" if exc.msg.endswith(" at") else f"{exc.msg} at column {exc.colno}"


def _json_source(path: Path, name: str) -> _Source:
    """A JSON array of rows, or {"data": [...]}; a .json file that is really JSON Lines is read as such."""
    try:
        with _binary(path) as fh:
            text = fh.read().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    except (OSError, EOFError, zlib.error) as exc:
        raise _refuse(name, f"cannot read the file: {exc}") from None
    if not text.strip():
        return _Source([], "element")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _Source(_jsonl_rows(path, name), "line")
        bad = _SURROGATE.search(text)
        if bad:
            line = text.count("\n", 0, bad.start()) + 1
            raise ImportFailed([ImportIssue(name, line, None, _not_utf8(bad.group()))]) from None
        raise ImportFailed([ImportIssue(name, exc.lineno, None, f"invalid JSON: {_json_error(exc)}")]) from None
    except RecursionError:
        raise _refuse(name, "invalid JSON: nested too deeply") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise _refuse(name, 'expected a JSON array of row objects (or {"data": [...]}); '
                            "for one object per line use .jsonl")
    rows = (_Row(i, el) if isinstance(el, dict)
            else ImportIssue(name, i, None, f"expected an object with columns, got {_kind(el)}", "element")
            for i, el in enumerate(doc, 1))
    return _Source(rows, "element")


def _csv_rows(path: Path, name: str) -> list[_Row | ImportIssue]:
    """Every cell read as text; cells holding a JSON message list become that list."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_filter=False,
                            encoding="utf-8", encoding_errors="surrogateescape", compression="infer")
    except pd.errors.EmptyDataError:
        return []
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        return [ImportIssue(name, int(found.group(1)) if found else None, None, f"malformed CSV: {exc}".strip())]
    except (OSError, EOFError, zlib.error) as exc:
        raise _refuse(name, f"cannot read the file: {exc}") from None
    columns = [str(c) for c in frame.columns]
    return [_Row(i, {col: _csv_cell(cell) for col, cell in zip(columns, values)})
            for i, values in enumerate(frame.itertuples(index=False, name=None), 1)]


def _csv_cell(cell: object) -> object:
    if not isinstance(cell, str):
        return None if _missing(cell) else cell
    if cell in ("NaN", "nan"):
        return None
    if cell.lstrip().startswith("[{"):
        try:
            value = json.loads(cell)
        except ValueError:
            return cell
        if isinstance(value, list) and all(isinstance(m, dict) for m in value):
            return value
    return cell


def _parquet_rows(path: Path, name: str) -> list[_Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise _refuse(name, f"not a readable Parquet file: {exc}") from None
    return [_Row(i, rec) for i, rec in enumerate(table.to_pylist(), 1)]


def _dataset_dir(path: Path, name: str) -> _Source:
    """A `datasets` save_to_disk folder: a Dataset, or a DatasetDict read from 'train' or its only split."""
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise _refuse(name, "a directory, but not one written by datasets' save_to_disk "
                            "(no state.json or dataset_dict.json)")
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as exc:  # datasets raises many unrelated types for a damaged folder
        raise _refuse(name, f"cannot load the datasets directory: {exc}") from None
    note = ""
    if isinstance(data, DatasetDict):
        splits = list(data)
        if "train" in splits:
            split = "train"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise _refuse(name, f"a DatasetDict with splits {', '.join(splits)} and none named 'train'; "
                                "save the split to import on its own")
        data, note = data[split], f"split '{split}'"
    return _Source([_Row(i, rec) for i, rec in enumerate(data.to_list(), 1)], "row", note)
