"""Data in and out: importers (every format people already have, validated all-or-nothing), the export of
models and the grown dataset, their cards, and the per-round report read back from storage."""

from engine.data.export import ExportError, ExportRequest, export, exportable
from engine.data.importers import ImportFailed, load_examples

__all__ = ["ExportError", "ExportRequest", "ImportFailed", "export", "exportable", "load_examples"]
