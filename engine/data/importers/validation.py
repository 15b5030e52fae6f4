"""What every importer shares: located issues (file, line, field), the all-or-nothing failure, the parsed
row, and the value checks every format parser runs on its fields."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.records import Example, Messages

MAX_IMPORT_BYTES = 2 * 2**30  # the default cap on a file's size on disk: 2 GiB
MAX_ISSUES = 50  # enough to see a pattern, few enough to read


SHOWN_ISSUES = 10


CHAT_ROLES = ("system", "user", "assistant")


# what no text field may hold: undecodable bytes (surrogateescape turns them into U+DC80..U+DCFF), unpaired
# surrogates from JSON escapes (\ud800) and NUL
BAD_CHARACTER = re.compile("[\ud800-\udfff\x00]")


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
class Row:
    line: int
    record: dict


@dataclass
class Source:
    """Rows of one file, or problems met while reading it, in file order."""

    items: Iterable[Row | ImportIssue]
    unit: str
    note: str = ""  # which part of the file was read, e.g. the split of a DatasetDict


@dataclass
class Parsed:
    prompt: Messages
    chosen: str | None = None
    rejected: str | None = None
    conversational: bool = False


@dataclass
class RowCheck:
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


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def value_kind(value: object) -> str:
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


def present(rec: dict, key: str, chk: RowCheck) -> bool:
    if key not in rec:
        chk.fail(key, "missing required column")
        return False
    if missing(rec[key]):
        chk.fail(key, "missing value (empty cell, null or NaN)")
        return False
    return True


def text_field(rec: dict, key: str, chk: RowCheck) -> str | None:
    if not present(rec, key, chk):
        return None
    value = rec[key]
    if not isinstance(value, str):
        chk.fail(key, f"expected text, got {value_kind(value)}")
        return None
    if not value.strip():
        chk.fail(key, "empty")
        return None
    return value


def messages_field(rec: dict, key: str, chk: RowCheck) -> Messages | None:
    """A list of {role, content} turns, normalised to exactly those two keys."""
    if not present(rec, key, chk):
        return None
    value = rec[key]
    if not isinstance(value, list):
        chk.fail(key, f"expected a list of messages, got {value_kind(value)}")
        return None
    if not value:
        chk.fail(key, "empty message list")
        return None
    out: Messages = []
    before = len(chk.issues)
    for i, msg in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(msg, dict):
            chk.fail(where, f"expected a message object with role and content, got {value_kind(msg)}")
            continue
        role, content = msg.get("role"), msg.get("content")
        if missing(role):
            chk.fail(f"{where}.role", "missing")
        elif role not in CHAT_ROLES:
            chk.fail(f"{where}.role", f"unknown role {preview(role)} (expected system, user or assistant)")
        if missing(content):
            chk.fail(f"{where}.content", "missing")
        elif not isinstance(content, str):
            chk.fail(f"{where}.content", f"expected text, got {value_kind(content)}")
        elif not content.strip():
            chk.fail(f"{where}.content", "empty")
        out.append({"role": role, "content": content})
    return out if len(chk.issues) == before else None


def ends_with_user(prompt: Messages, key: str, chk: RowCheck) -> bool:
    if not prompt or prompt[-1]["role"] != "user":
        last = prompt[-1]["role"] if prompt else "nothing"
        chk.fail(key, f"the prompt must end with the user's turn, but it ends with {last}")
        return False
    return True


def prompt_field(rec: dict, key: str, chk: RowCheck, *, lists: bool = True) -> Messages | None:
    """A prompt given as plain text (one user turn) or, where the format allows, as chat messages."""
    if not present(rec, key, chk):
        return None
    value = rec[key]
    if isinstance(value, list) and lists:
        msgs = messages_field(rec, key, chk)
        return msgs if msgs is not None and ends_with_user(msgs, key, chk) else None
    if isinstance(value, str):
        text = text_field(rec, key, chk)
        return None if text is None else [{"role": "user", "content": text}]
    chk.fail(key, f"expected {'text or a list of messages' if lists else 'text'}, got {value_kind(value)}")
    return None


def pair_fields(
    prompt: Messages | None,
    chosen: str | None,
    rejected: str | None,
    keys: tuple[str, str],
    chk: RowCheck,
    *,
    conversational: bool,
) -> Parsed | None:
    """The final, stripped answers; refuses empty answers and a pair with nothing to prefer."""
    if prompt is None or chosen is None or rejected is None:
        return None
    chosen, rejected = chosen.strip(), rejected.strip()
    for key, answer in zip(keys, (chosen, rejected)):
        if not answer:
            chk.fail(key, "empty answer")
    if chosen and chosen == rejected:
        chk.fail(keys[1], f"same text as '{keys[0]}': a pair needs two different answers")
    asked = prompt[-1]["content"].strip() if prompt else ""
    for key, answer in zip(keys, (chosen, rejected)):
        if answer and answer == asked:
            chk.fail(key, "same text as the prompt: an answer must answer it, not repeat it")
    if chk.issues:
        return None
    return Parsed(prompt, chosen, rejected, conversational)


def preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_character(value: object, where: str = "") -> tuple[str, str] | None:
    """(field path, first character no text may hold: see BAD_CHARACTER), or None."""
    if isinstance(value, str):
        found = BAD_CHARACTER.search(value)
        return (where or None, found.group()) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            found = BAD_CHARACTER.search(str(key))
            bad = (printable(path), found.group()) if found else bad_character(item, path)
            if bad:
                return bad
    if isinstance(value, list):
        for i, item in enumerate(value):
            bad = bad_character(item, f"{where}[{i}]")
            if bad:
                return bad
    return None


def not_text(char: str) -> str:
    """Why a character of BAD_CHARACTER cannot be imported, in words that print (the character itself may not)."""
    if char == "\x00":
        return "contains a NUL character (U+0000), which no text field may hold"
    if "\udc80" <= char <= "\udcff":
        return f"not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02X}); save the file as UTF-8"
    return (
        f"contains an unpaired surrogate (\\u{ord(char):04x}, from a JSON escape), which is not a character; "
        "write the character itself or its surrogate pair"
    )


def printable(text: str) -> str:
    """Undecodable bytes and unpaired surrogates shown as U+FFFD, so a message about them can itself be printed."""
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)


def refuse(name: str, message: str) -> ImportFailed:
    return ImportFailed([ImportIssue(name, None, None, message)])
