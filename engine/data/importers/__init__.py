"""Importers: one module per format family (trl, hh, columns, prompts), the file readers (readers), format
detection (detect), the validation they share (validation), and the all-or-nothing import itself (load)."""

from engine.data.importers.detect import detect_format
from engine.data.importers.load import load_examples
from engine.data.importers.validation import ImportFailed, ImportIssue, ImportResult

__all__ = ["ImportFailed", "ImportIssue", "ImportResult", "detect_format", "load_examples"]
