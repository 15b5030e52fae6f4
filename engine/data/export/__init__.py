"""Exports the Hugging Face ecosystem loads as-is: the request and its records (records), the run's models
(model), the grown dataset (dataset), their cards (cards), and the staged, atomic write (staging); the entry
points are in exporter."""

from engine.data.export.exporter import check_model_export, export, exportable
from engine.data.export.records import ExportError, ExportRequest

__all__ = ["ExportError", "ExportRequest", "check_model_export", "export", "exportable"]
