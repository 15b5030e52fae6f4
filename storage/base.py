"""The one open database every store part works on: the connection, transactions, and row helpers."""

from __future__ import annotations

import contextlib
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from storage.db import connect, migrate


class NotFound(ValueError):
    """No row with that id: callers (the studio's API) say so instead of failing on a missing attribute."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def row_to(cls, row: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in names})


class StoreBase:
    """One open database. Cheap to create; each process (UI, worker, stage) opens its own."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = connect(self.path)
        migrate(self.db)

    def close(self) -> None:
        self.db.conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """One transaction for a multi-row write; nested calls become savepoints."""
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        self.db.execute("COMMIT")

    def _one(self, sql: str, params=()) -> dict | None:
        rows = list(self.db.query(sql, params))
        return rows[0] if rows else None

    def _found(self, what: str, key, sql: str, params=()) -> dict:
        """The one row `sql` selects, or NotFound naming `what` and `key`."""
        row = self._one(sql, params)
        if row is None:
            raise NotFound(f"{what} {key} does not exist")
        return row
