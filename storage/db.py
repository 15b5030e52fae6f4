"""Opening the database: WAL, foreign keys, and forward migrations keyed on a schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    """The first schema: the tables of DESIGN.md section 2."""
    db["projects"].create({"id": int, "name": str, "model": str, "folder": str, "created_at": str}, pk="id")
    db["projects"].create_index(["name"], unique=True)
    db["configs"].create(
        {"id": int, "project_id": int, "name": str, "yaml": str, "created_at": str},
        pk="id",
        foreign_keys=[("project_id", "projects", "id")],
    )
    db["examples"].create(
        {
            "id": int,
            "project_id": int,
            "role": str,
            "prompt": str,
            "chosen": str,
            "rejected": str,
            "source_file": str,
            "source_line": int,
            "conversational": int,
            "hash": str,
        },
        pk="id",
        foreign_keys=[("project_id", "projects", "id")],
    )
    db["examples"].create_index(["project_id", "role", "hash"], unique=True)
    db["jobs"].create(
        {
            "id": int,
            "project_id": int,
            "kind": str,
            "config_yaml": str,
            "status": str,
            "stage": str,
            "round": int,
            "progress_done": int,
            "progress_total": int,
            "eta_s": float,
            "heartbeat_at": str,
            "pid": int,
            "worker": str,
            "stop_requested": int,
            "error": str,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        foreign_keys=[("project_id", "projects", "id")],
        defaults={"status": "queued", "stop_requested": 0},
    )
    db["jobs"].create_index(["status"])
    db["job_events"].create(
        {"id": int, "job_id": int, "at": str, "level": str, "message": str},
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["job_events"].create_index(["job_id", "id"])
    db["rounds"].create(
        {
            "id": int,
            "job_id": int,
            "round": int,
            "status": str,
            "stages_done": str,
            "adapter_path": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["rounds"].create_index(["job_id", "round"], unique=True)
    db["pairs"].create(
        {
            "id": int,
            "project_id": int,
            "job_id": int,
            "round": int,
            "example_id": int,
            "prompt": str,
            "response_a": str,
            "response_b": str,
            "tokens_a": int,
            "tokens_b": int,
            "logp_policy_a": float,
            "logp_policy_b": float,
            "logp_init_a": float,
            "logp_init_b": float,
            "reward_a": float,
            "reward_b": float,
            "margin": float,
            "confidence": float,
            "judge_label": str,
            "label": str,
            "label_source": str,
            "ext_margin": float,
            "noisy": int,
            "gold_a": float,
            "gold_b": float,
        },
        pk="id",
        foreign_keys=[("project_id", "projects", "id"), ("job_id", "jobs", "id"), ("example_id", "examples", "id")],
    )
    db["pairs"].create_index(["job_id", "round", "example_id"], unique=True)
    db["label_events"].create(
        {
            "id": int,
            "pair_id": int,
            "old_label": str,
            "new_label": str,
            "old_source": str,
            "new_source": str,
            "actor": str,
            "note": str,
            "at": str,
        },
        pk="id",
        foreign_keys=[("pair_id", "pairs", "id")],
    )
    db["metrics"].create(
        {
            "id": int,
            "job_id": int,
            "round": int,
            "stage": str,
            "name": str,
            "step": int,
            "value": float,
            "at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["metrics"].create_index(["job_id", "name", "step"])
    db["artifacts"].create(
        {
            "id": int,
            "project_id": int,
            "job_id": int,
            "round": int,
            "kind": str,
            "path": str,
            "meta": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("project_id", "projects", "id"), ("job_id", "jobs", "id")],
    )


def _v2(db: sqlite_utils.Database) -> None:
    """Human rewrites and the review queue's indexes (the queue must page fast at 100k pairs)."""
    db["pairs"].add_column("human_response", str)
    db["pairs"].create_index(["project_id", "noisy", "confidence"])
    db["pairs"].create_index(["project_id", "round", "confidence"])
    db["label_events"].create_index(["pair_id"])


def _v3(db: sqlite_utils.Database) -> None:
    """Worker liveness that survives PID reuse (the worker process's start time beside its PID) and the count of
    automatic resumes, which the studio shows once the worker gives up."""
    db["jobs"].add_column("worker_started", float)
    db["jobs"].add_column("auto_resumes", int, not_null_default=0)


def _v4(db: sqlite_utils.Database) -> None:
    """A metric point is keyed by (job, round, stage, name, step): a resumed stage replaces the points its killed
    attempt wrote instead of adding a second series. Earlier duplicates keep their latest value."""
    db.execute(
        "delete from metrics where id not in (select max(id) from metrics group by job_id, round, stage, name, step)"
    )
    db["metrics"].create_index(["job_id", "round", "stage", "name", "step"], unique=True)


def _v5(db: sqlite_utils.Database) -> None:
    """Noise flags raised during the α = 0 warm-up, kept apart from `noisy` (the flags that smoothed a label)."""
    db["pairs"].add_column("warmup_flag", int)


def _v6(db: sqlite_utils.Database) -> None:
    """Undoable labels (the answer and noise flag a label event replaced, and which event an undo reverts) and
    per-project annotation guidelines."""
    for column, kind in (("old_response", str), ("new_response", str), ("old_noisy", int), ("undoes", int)):
        db["label_events"].add_column(column, kind)
    db["projects"].add_column("guidelines", str)


def _v7(db: sqlite_utils.Database) -> None:
    """Label events grouped into the action that made them (a bulk accept of N pairs is one action, undone as
    one): `action` is the id of the action's first event. Earlier events are each an action of their own."""
    db["label_events"].add_column("action", int)
    db.execute("update label_events set action = id")
    db["label_events"].create_index(["action"])


def _v8(db: sqlite_utils.Database) -> None:
    """The blind audit: each round's uniform random sample of judged pairs (a pair is in at most one, at its
    draw position) and, per label event, whether the label was given in the audit order or the review queue.
    Earlier events keep via NULL: not audit labels."""
    db["audit_pairs"].create(
        {"pair_id": int, "job_id": int, "round": int, "position": int},
        pk="pair_id",
        foreign_keys=[("pair_id", "pairs", "id"), ("job_id", "jobs", "id")],
    )
    db["audit_pairs"].create_index(["job_id", "round", "position"], unique=True)
    db["label_events"].add_column("via", str)


def _v9(db: sqlite_utils.Database) -> None:
    """The seed builder: answers sampled (or written by a person) for seed prompts, numbered per prompt so a resumed
    sampling job never adds a second set, and the person's rankings of them, one row per action (undone_at marks
    an undo; a row is never deleted)."""
    db["seed_answers"].create(
        {
            "id": int,
            "example_id": int,
            "sample_index": int,
            "text": str,
            "logp": float,
            "tokens": int,
            "source": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("example_id", "examples", "id")],
    )
    db["seed_answers"].create_index(["example_id", "sample_index"], unique=True)
    db["seed_rankings"].create(
        {
            "id": int,
            "project_id": int,
            "example_id": int,
            "best_answer_id": int,
            "worst_answer_id": int,
            "status": str,
            "order_json": str,
            "actor": str,
            "created_at": str,
            "undone_at": str,
        },
        pk="id",
        foreign_keys=[
            ("project_id", "projects", "id"),
            ("example_id", "examples", "id"),
            ("best_answer_id", "seed_answers", "id"),
            ("worst_answer_id", "seed_answers", "id"),
        ],
    )
    db["seed_rankings"].create_index(["example_id", "id"])
    db["seed_rankings"].create_index(["project_id", "actor", "id"])


def _v10(db: sqlite_utils.Database) -> None:
    """Review assignments: which person reviews which pair of a round (with overlap k, each pair goes to k + 1
    people). A re-assignment replaces the round's rows; labels live in label_events and are never touched."""
    db["assignments"].create(
        {"pair_id": int, "person": str, "job_id": int, "round": int, "created_at": str},
        pk=("pair_id", "person"),
        foreign_keys=[("pair_id", "pairs", "id"), ("job_id", "jobs", "id")],
    )
    db["assignments"].create_index(["job_id", "round", "person"])
    db["assignments"].create_index(["person", "pair_id"])
    db["label_events"].create_index(["actor", "id"])  # a person's own labels: their queue, progress and undo


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str | Path) -> sqlite_utils.Database:
    """A connection in autocommit mode: storage opens its own transactions (BEGIN IMMEDIATE) where it writes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return sqlite_utils.Database(conn)


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations between the file's version and `target`, each in its own transaction."""
    current = schema_version(db)
    for version in range(current, target):
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) == version:  # another process may have migrated meanwhile
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return schema_version(db)
