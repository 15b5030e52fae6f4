"""Readers: a path in, rows (or located read problems) out, for JSONL, JSON, CSV, Parquet and a `datasets`
directory saved with `save_to_disk`."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from engine.data.importers.validation import (
    BAD_CHARACTER,
    ImportFailed,
    ImportIssue,
    Row,
    Source,
    missing,
    not_text,
    refuse,
    value_kind,
)

_FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def open_source(path: Path, name: str, max_bytes: int | None = None) -> Source:
    """The file's rows. Refused before reading: a missing path, anything but a regular file or a folder (a FIFO
    would block the import forever, a device never ends), and more than `max_bytes` on disk."""
    if not path.exists():
        raise refuse(name, "no such file or directory")
    if not (path.is_file() or path.is_dir()):
        raise refuse(name, "not a regular file (a FIFO, socket or device): import reads files and datasets folders")
    size = _size_on_disk(path)
    if max_bytes is not None and size > max_bytes:
        raise refuse(
            name,
            f"{size / 2**20:.1f} MiB is over the import limit of {max_bytes / 2**20:.1f} MiB "
            "(split the file; `launch.py import --max-mb` raises the limit)",
        )
    if path.is_dir():
        return _dataset_dir(path, name)
    lower = path.name.lower()
    compressed = lower.endswith(".gz")
    kind = _FILE_KINDS.get(Path(lower.removesuffix(".gz")).suffix)
    if kind is None or (compressed and kind == "parquet"):
        raise refuse(
            name,
            "unsupported file type: use .jsonl, .json, .csv (optionally .gz), .parquet "
            "or a directory written by datasets' save_to_disk",
        )
    if kind == "jsonl":
        return Source(_jsonl_rows(path, name), "line")
    if kind == "json":
        return _json_source(path, name)
    if kind == "csv":
        return Source(_csv_rows(path, name), "row")
    return Source(_parquet_rows(path, name), "row")


def _size_on_disk(path: Path) -> int:
    """A file's size, or the regular files' total under a datasets folder (the links and FIFOs are never read)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _jsonl_rows(path: Path, name: str) -> Iterator[Row | ImportIssue]:
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


def _json_row(text: str, line: int, name: str, unit: str) -> Row | ImportIssue:
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        bad = BAD_CHARACTER.search(text)
        if bad:
            return ImportIssue(name, line, None, not_text(bad.group()), unit)
        return ImportIssue(name, line, None, f"invalid JSON: {_json_error(exc)}; is the line cut short?", unit)
    except RecursionError:
        return ImportIssue(name, line, None, "invalid JSON: nested too deeply", unit)
    if not isinstance(rec, dict):
        return ImportIssue(name, line, None, f"expected a JSON object with columns, got {value_kind(rec)}", unit)
    return Row(line, rec)


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} column {exc.colno}" if exc.msg.endswith(" at") else f"{exc.msg} at column {exc.colno}"


def _json_source(path: Path, name: str) -> Source:
    """A JSON array of rows, or {"data": [...]}; a .json file that is really JSON Lines is read as such."""
    try:
        with _binary(path) as fh:
            text = fh.read().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    except (OSError, EOFError, zlib.error) as exc:
        raise refuse(name, f"cannot read the file: {exc}") from None
    if not text.strip():
        return Source([], "element")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return Source(_jsonl_rows(path, name), "line")
        bad = BAD_CHARACTER.search(text)
        if bad:
            line = text.count("\n", 0, bad.start()) + 1
            raise ImportFailed([ImportIssue(name, line, None, not_text(bad.group()))]) from None
        raise ImportFailed([ImportIssue(name, exc.lineno, None, f"invalid JSON: {_json_error(exc)}")]) from None
    except RecursionError:
        raise refuse(name, "invalid JSON: nested too deeply") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise refuse(
            name, 'expected a JSON array of row objects (or {"data": [...]}); for one object per line use .jsonl'
        )
    rows = (
        Row(i, el)
        if isinstance(el, dict)
        else ImportIssue(name, i, None, f"expected an object with columns, got {value_kind(el)}", "element")
        for i, el in enumerate(doc, 1)
    )
    return Source(rows, "element")


def _csv_rows(path: Path, name: str) -> list[Row | ImportIssue]:
    """Every cell read as text; cells holding a JSON message list become that list."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            path,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
            encoding_errors="surrogateescape",
            compression="infer",
        )
    except pd.errors.EmptyDataError:
        return []
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        return [ImportIssue(name, int(found.group(1)) if found else None, None, f"malformed CSV: {exc}".strip())]
    except (OSError, EOFError, zlib.error) as exc:
        raise refuse(name, f"cannot read the file: {exc}") from None
    columns = [str(c) for c in frame.columns]
    return [
        Row(i, {col: _csv_cell(cell) for col, cell in zip(columns, values)})
        for i, values in enumerate(frame.itertuples(index=False, name=None), 1)
    ]


def _csv_cell(cell: object) -> object:
    if not isinstance(cell, str):
        return None if missing(cell) else cell
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


def _parquet_rows(path: Path, name: str) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise refuse(name, f"not a readable Parquet file: {exc}") from None
    return [Row(i, rec) for i, rec in enumerate(table.to_pylist(), 1)]


def _dataset_dir(path: Path, name: str) -> Source:
    """A `datasets` save_to_disk folder: a Dataset, or a DatasetDict read from 'train' or its only split."""
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise refuse(
            name, "a directory, but not one written by datasets' save_to_disk (no state.json or dataset_dict.json)"
        )
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as exc:  # datasets raises many unrelated types for a damaged folder
        raise refuse(name, f"cannot load the datasets directory: {exc}") from None
    note = ""
    if isinstance(data, DatasetDict):
        splits = list(data)
        if "train" in splits:
            split = "train"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise refuse(
                name,
                f"a DatasetDict with splits {', '.join(splits)} and none named 'train'; "
                "save the split to import on its own",
            )
        data, note = data[split], f"split '{split}'"
    return Source([Row(i, rec) for i, rec in enumerate(data.to_list(), 1)], "row", note)
