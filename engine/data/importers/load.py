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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.importers.columns import alpaca, answer_choice, autotrain
from engine.data.importers.detect import (
    KNOWN_COLUMNS,
    PROMPT_ONLY_FORMATS,
    compatible,
    detect_format,
)
from engine.data.importers.hh import hh_transcript
from engine.data.importers.prompts import prompts_only
from engine.data.importers.readers import open_source
from engine.data.importers.trl import (
    conversation_split,
    trl_conversational_explicit,
    trl_standard_explicit,
    trl_standard_implicit,
)
from engine.data.importers.validation import (
    MAX_IMPORT_BYTES,
    MAX_ISSUES,
    ImportFailed,
    ImportIssue,
    ImportResult,
    Parsed,
    Row,
    RowCheck,
    bad_character,
    missing,
    not_text,
)
from storage.records import ROLES, Example

_PARSERS: dict[str, Callable[[dict, RowCheck, bool], Parsed | None]] = {
    "trl-standard-explicit": trl_standard_explicit,
    "trl-conversational-explicit": trl_conversational_explicit,
    "trl-standard-implicit": trl_standard_implicit,
    "trl-conversational-implicit": conversation_split,
    "hh-transcript": hh_transcript,
    "ultrafeedback-binarized": conversation_split,
    "alpaca": alpaca,
    "answer1-answer2-choice": answer_choice,
    "autotrain": autotrain,
    "prompts-text": prompts_only,
    "prompts-messages": prompts_only,
}


# the answer columns of the formats whose prompt has a column of its own: a seed row with all of them absent or
# empty is a seed prompt (the prompt is inside the answers of the implicit formats)
ANSWER_COLUMNS = {
    "trl-standard-explicit": ("chosen", "rejected"),
    "trl-conversational-explicit": ("chosen", "rejected"),
    "alpaca": ("chosen", "rejected"),
    "answer1-answer2-choice": ("answer1", "answer2", "choice"),
    "autotrain": ("text", "rejected_text"),
}


def load_examples(path: str | Path, role: str, max_bytes: int | None = MAX_IMPORT_BYTES) -> ImportResult:
    """Read a whole file as `role` (seed | pool | eval); raise ImportFailed listing every problem.

    Pools keep only the prompt of whatever format they come in; eval needs both answers. A seed file may mix pairs
    and prompts: a row with both answers is a seed pair, a row with no answer at all (a prompt-only row, or every
    answer column absent or empty) is a seed prompt, whose answers the seed builder samples and a person ranks; a
    row with one answer of two is refused as in any pair file. A file of prompts only is a seed of prompts only.
    Duplicate rows (same prompt and answers; same prompt for pools and seed prompts) are reported and skipped. A
    file (or datasets folder) over `max_bytes` on disk is refused before it is read; None: no limit."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    path = Path(path)
    name = str(path)
    source = open_source(path, name, max_bytes)
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

    def take(self, item: Row | ImportIssue) -> None:
        if isinstance(item, ImportIssue):
            self.issues.append(item)
            return
        self.rows_read += 1
        line, rec = item.line, item.record
        bad = bad_character(rec)
        if bad is not None:
            where, char = bad
            self.issue(line, where, not_text(char))
            return
        found = detect_format(rec)
        if self.format is None and not self._adopt(found, line, rec):
            return
        answerless = self.role == "seed" and _no_answer(found, rec)
        if self.role == "seed" and self.format in PROMPT_ONLY_FORMATS and found is not None and not answerless:
            self.format, self.format_line = found, line  # prompts so far, and now the file's first pair
        if found is not None and found not in PROMPT_ONLY_FORMATS and not compatible(found, self.format):
            if not self.mixed_reported:
                self.mixed_reported = True
                self.issue(
                    line,
                    None,
                    f"this row is in format {found}, but the file is {self.format} "
                    f"(from {self.unit} {self.format_line}); one format per file",
                )
            return
        chk = RowCheck(self.file, line, self.unit)
        if answerless:
            parsed = _PARSERS[found](rec, chk, False)
        else:
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
            self.issue(line, None, f"unknown format: columns seen: {columns}; known column sets: {KNOWN_COLUMNS}")
            self.stopped = True
            return False
        if found in PROMPT_ONLY_FORMATS and self.role == "eval":
            self.issue(
                line,
                "chosen",
                f"role '{self.role}' needs preference pairs (chosen and rejected), "
                f"but this file holds prompts only ({found})",
            )
            self.stopped = True
            return False
        self.format, self.format_line = found, line
        return True

    def _keep(self, line: int, parsed: Parsed) -> None:
        prompt_key = tuple((m["role"], m["content"]) for m in parsed.prompt)
        key = (prompt_key,) if self.role == "pool" else (prompt_key, parsed.chosen, parsed.rejected)
        if key in self.seen:
            what = "prompt" if parsed.chosen is None or self.role == "pool" else "prompt, chosen and rejected"
            self.duplicates.append(
                ImportIssue(self.file, line, None, f"same {what} as {self.unit} {self.seen[key]}; skipped", self.unit)
            )
            return
        self.seen[key] = line
        pair = self.role != "pool"
        self.examples.append(
            Example(
                role=self.role,
                prompt=parsed.prompt,
                chosen=parsed.chosen if pair else None,
                rejected=parsed.rejected if pair else None,
                source_file=self.file,
                source_line=line,
                conversational=parsed.conversational,
            )
        )

    def finish(self, note: str) -> ImportResult:
        if not self.issues and self.rows_read == 0:
            self.issues.append(ImportIssue(self.file, None, None, "no rows: the file is empty", self.unit))
        elif not self.issues and not self.examples:
            self.issues.append(ImportIssue(self.file, None, None, "no usable rows: every row was skipped", self.unit))
        if self.issues:
            raise ImportFailed(self.issues[:MAX_ISSUES])
        name = f"{self.format} ({note})" if note else str(self.format)
        return ImportResult(self.examples, name, self.duplicates, self.rows_read, self.skipped)


def _no_answer(found: str | None, rec: dict) -> bool:
    """Whether a row holds a prompt and no answer: a prompt-only format, or every answer column absent or empty."""
    if found in PROMPT_ONLY_FORMATS:
        return True
    columns = ANSWER_COLUMNS.get(found or "", ())
    return bool(columns) and all(_blank(rec.get(column)) for column in columns)


def _blank(value: object) -> bool:
    return missing(value) or (isinstance(value, str) and not value.strip())
