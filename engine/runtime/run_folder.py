"""Where a run's files go on disk. Light on purpose: the studio reads it without loading the engine."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig


def run_dir(cfg: RunConfig, db: str | Path, job_id: int) -> Path:
    """Where a run writes its rounds and final model: the config's output_dir, else runs/<database>/<project>/
    job_<id> beside the database, so two databases (or a recreated one) never share a folder."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    db = Path(db).resolve()
    return db.parent / "runs" / db.stem / cfg.project / f"job_{job_id}"
