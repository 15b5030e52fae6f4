"""Projects, their configurations and imported examples, and what runs leave behind: metrics and artifacts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from storage.base import StoreBase, now, row_to
from storage.records import Artifact, Example, Metric, Project


def example_hash(ex: Example) -> str:
    key = json.dumps([ex.prompt, ex.chosen, ex.rejected], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()


def example_from_row(row: dict) -> Example:
    row = dict(row)
    row["prompt"] = json.loads(row["prompt"])
    row["conversational"] = bool(row["conversational"])
    return row_to(Example, row)


def _artifact_from_row(row: dict) -> Artifact:
    row = dict(row)
    row["meta"] = json.loads(row["meta"] or "{}")
    return row_to(Artifact, row)


class ProjectStore(StoreBase):
    def project(self, name: str) -> Project | None:
        row = self._one("select * from projects where name = ?", [name])
        return row_to(Project, row) if row else None

    def project_by_id(self, project_id: int) -> Project:
        """The project; NotFound when there is none with that id."""
        return row_to(Project, self._found("project", project_id, "select * from projects where id = ?", [project_id]))

    def ensure_project(self, name: str, model: str = "", folder: str = "") -> Project:
        with self.write():
            found = self.project(name)
            if found:
                if model and found.model != model:
                    self.db.execute("update projects set model = ? where id = ?", [model, found.id])
                    found.model = model
                return found
            self.db["projects"].insert({"name": name, "model": model, "folder": folder, "created_at": now()})
        return self.project(name)

    def projects(self) -> list[Project]:
        return [row_to(Project, r) for r in self.db.query("select * from projects order by id")]

    def save_config(self, project_id: int, name: str, yaml_text: str) -> int:
        with self.write():
            return (
                self.db["configs"]
                .insert({"project_id": project_id, "name": name, "yaml": yaml_text, "created_at": now()})
                .last_pk
            )

    def set_guidelines(self, project_id: int, text: str) -> None:
        with self.write():
            self.db.execute("update projects set guidelines = ? where id = ?", [text, project_id])

    def configs(self, project_id: int) -> list[dict]:
        return list(self.db.query("select * from configs where project_id = ? order by id", [project_id]))

    # examples
    def add_examples(self, project_id: int, examples: list[Example]) -> tuple[int, int]:
        """Insert all or nothing; rows already in the project (same role and content) are skipped.
        Returns (added, skipped)."""
        rows = [
            {
                "project_id": project_id,
                "role": ex.role,
                "prompt": json.dumps(ex.prompt, ensure_ascii=False),
                "chosen": ex.chosen,
                "rejected": ex.rejected,
                "source_file": ex.source_file,
                "source_line": ex.source_line,
                "conversational": int(ex.conversational),
                "hash": example_hash(ex),
            }
            for ex in examples
        ]
        with self.write():
            before = self.count_examples(project_id)
            self.db["examples"].insert_all(rows, ignore=True, batch_size=500)
            added = self.count_examples(project_id) - before
        return added, len(rows) - added

    def count_examples(self, project_id: int, role: str | None = None) -> int:
        if role is None:
            return self._one("select count(*) n from examples where project_id = ?", [project_id])["n"]
        return self._one("select count(*) n from examples where project_id = ? and role = ?", [project_id, role])["n"]

    def examples(self, project_id: int, role: str, limit: int | None = None, offset: int = 0) -> list[Example]:
        sql = "select * from examples where project_id = ? and role = ? order by id"
        params: list = [project_id, role]
        if limit is not None:
            sql += " limit ? offset ?"
            params += [limit, offset]
        return [example_from_row(r) for r in self.db.query(sql, params)]

    def add_metrics(self, metrics: list[Metric]) -> None:
        """Write metric points; a point with the key of one already stored (job, round, stage, name, step: a
        resumed stage) replaces it."""
        rows = []
        for m in metrics:
            row = asdict(m)
            row.pop("id")
            row["at"] = row["at"] or now()
            rows.append(row)
        with self.write():
            self.db["metrics"].insert_all(rows, replace=True)

    def metrics(self, job_id: int, names: list[str] | None = None) -> list[Metric]:
        sql, params = "select * from metrics where job_id = ?", [job_id]
        if names:
            sql += f" and name in ({','.join('?' * len(names))})"
            params += names
        return [row_to(Metric, r) for r in self.db.query(sql + " order by id", params)]

    def add_artifact(self, a: Artifact) -> int:
        row = asdict(a)
        row.pop("id")
        row["meta"] = json.dumps(a.meta)
        row["created_at"] = a.created_at or now()
        with self.write():
            return self.db["artifacts"].insert(row).last_pk

    def artifacts(self, project_id: int, kind: str | None = None, job_id: int | None = None) -> list[Artifact]:
        sql, params = "select * from artifacts where project_id = ?", [project_id]
        if kind:
            sql += " and kind = ?"
            params.append(kind)
        if job_id is not None:
            sql += " and job_id = ?"
            params.append(job_id)
        return [_artifact_from_row(r) for r in self.db.query(sql + " order by id", params)]

    def orphaned_artifacts(self) -> list[Artifact]:
        """Artifacts whose project, or job, no longer exists."""
        rows = self.db.query(
            "select a.* from artifacts a left join projects p on p.id = a.project_id "
            "left join jobs j on j.id = a.job_id "
            "where p.id is null or (a.job_id is not null and j.id is null) order by a.id"
        )
        return [_artifact_from_row(r) for r in rows]

    def all_artifacts(self) -> list[Artifact]:
        return [_artifact_from_row(r) for r in self.db.query("select * from artifacts order by id")]
