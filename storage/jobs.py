"""Jobs, their log (job_events) and rounds: every state change of a job and its rounds in one transaction with
its cause; and the database's own consistency queries (launch.py doctor)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone

from storage.base import StoreBase, now, row_to
from storage.records import Job, Round

RESUMABLE_STATES = ("stopped", "interrupted", "failed", "paused")


def _job_from_row(row: dict) -> Job:
    job = row_to(Job, row)
    job.stop_requested = bool(row.get("stop_requested"))
    return job


class JobStore(StoreBase):
    def enqueue(self, job: Job) -> int:
        row = asdict(job)
        row.pop("id")
        row.update(status="queued", created_at=now(), stop_requested=0)
        with self.write():
            return self.db["jobs"].insert(row).last_pk

    def job(self, job_id: int) -> Job:
        """The job; NotFound when there is none with that id."""
        return _job_from_row(self._found("job", job_id, "select * from jobs where id = ?", [job_id]))

    def jobs(self, project_id: int | None = None, statuses: tuple[str, ...] | None = None) -> list[Job]:
        sql, params = "select * from jobs where 1 = 1", []
        if project_id is not None:
            sql += " and project_id = ?"
            params.append(project_id)
        if statuses:
            sql += f" and status in ({','.join('?' * len(statuses))})"
            params += list(statuses)
        return [_job_from_row(r) for r in self.db.query(sql + " order by id", params)]

    def claim_job(self, worker: str, pid: int, job_id: int | None = None, started: float | None = None) -> Job | None:
        """Atomically take the oldest queued job (or the given one): two workers never take the same job.
        `started`: the worker process's start time, so that a later process given the same PID is not taken for
        it; the claim is logged in the same transaction."""
        with self.write():
            if job_id is None:
                row = self._one("select id from jobs where status = 'queued' order by id limit 1")
            else:
                row = self._one("select id from jobs where status = 'queued' and id = ?", [job_id])
            if row is None:
                return None
            t = now()
            self.db.execute(
                "update jobs set status = 'running', worker = ?, pid = ?, worker_started = ?, heartbeat_at = ?, "
                "started_at = coalesce(started_at, ?), stop_requested = 0, error = '' where id = ?",
                [worker, pid, started, t, t, row["id"]],
            )
            self.log(row["id"], f"claimed by {worker}")
        return self.job(row["id"])

    def update_job(self, job_id: int, **values) -> None:
        values = {k: (int(v) if isinstance(v, bool) else v) for k, v in values.items()}
        with self.write():
            self.db["jobs"].update(job_id, values)

    def heartbeat(self, job_id: int, worker: str | None = None) -> bool:
        """Beat the job's heartbeat. With `worker`, only while that worker still holds the running job:
        False means it lost the job (stopped from the studio while queued, or declared stale and requeued)."""
        if worker is None:
            self.update_job(job_id, heartbeat_at=now())
            return True
        return self.update_held_job(job_id, worker, heartbeat_at=now())

    def update_held_job(self, job_id: int, holder: str, **values) -> bool:
        """Update a running job only while the worker named `holder` holds it; False (and nothing written)
        once another worker has taken it or the studio has ended it. The worker writes every state change
        this way."""
        values = {k: (int(v) if isinstance(v, bool) else v) for k, v in values.items()}
        with self.write():
            cur = self.db.execute(
                f"update jobs set {', '.join(f'[{k}] = ?' for k in values)} "
                "where id = ? and status = 'running' and worker = ?",
                [*values.values(), job_id, holder],
            )
            return cur.rowcount == 1

    def finish_job(
        self,
        job_id: int,
        status: str,
        error: str = "",
        worker: str | None = None,
        cause: str = "",
        level: str = "info",
        **values,
    ) -> bool:
        """End a job (done, failed, stopped); with `worker`, only while that worker holds it. Its rounds' states
        follow, and `cause` goes into its log, in the same transaction: no round is left running by an ended job."""
        values.update(status=status, error=error, finished_at=now(), pid=None)
        with self.write():
            if worker is not None:
                if not self.update_held_job(job_id, worker, **values):
                    return False
            else:
                self.update_job(job_id, **values)
            self._settle_rounds(job_id, status)
            if cause:
                self.log(job_id, cause, level)
        return True

    def _settle_rounds(self, job_id: int, status: str) -> None:
        """Rounds a job was working on take its end state: a done job's rounds are done; a stopped, failed or
        interrupted job's running round (or one paused at review, once stopped) takes that state."""
        if status == "done":
            self.db.execute(
                "update rounds set status = 'done', finished_at = coalesce(finished_at, ?) "
                "where job_id = ? and status != 'done'",
                [now(), job_id],
            )
        elif status in ("stopped", "failed", "interrupted"):
            self.db.execute(
                "update rounds set status = ? where job_id = ? and status in ('running', 'review')", [status, job_id]
            )

    def request_stop(self, job_id: int) -> None:
        self.update_job(job_id, stop_requested=True)

    def requeue(
        self, job_id: int, statuses: tuple[str, ...] = RESUMABLE_STATES, cause: str = "", auto: bool = False
    ) -> bool:
        """Resume a stopped, interrupted, failed or paused job: it continues from its last completed stage.
        Only from those states, checked in the same transaction: two workers recovering at once, or a resume
        racing a claim, never put a running job back in the queue. False when the job was not in them.
        `auto`: a worker's automatic resume, counted in the job's auto_resumes."""
        with self.write():
            cur = self.db.execute(
                "update jobs set status = 'queued', stop_requested = 0, error = '', finished_at = null, "
                f"auto_resumes = auto_resumes + ? where id = ? and status in ({','.join('?' * len(statuses))})",
                [int(auto), job_id, *statuses],
            )
            if cur.rowcount == 1 and cause:
                self.log(job_id, cause)
            return cur.rowcount == 1

    def give_up_resuming(self, job_id: int, limit: int) -> bool:
        """An interrupted job resumed `limit` times already stays interrupted, with the reason as its error (the
        studio shows it) and in its log, once. False when the job was not interrupted or had already been told."""
        reason = (
            f"automatic resume gave up: interrupted again after {limit} automatic resumes "
            f"(the worker's max_auto_resumes); resume it by hand once the cause is fixed"
        )
        with self.write():
            cur = self.db.execute(
                "update jobs set error = ? where id = ? and status = 'interrupted' and error != ?",
                [reason, job_id, reason],
            )
            if cur.rowcount == 1:
                self.log(job_id, reason, "warning")
            return cur.rowcount == 1

    def interrupt_job(self, job_id: int, worker: str | None, cause: str = "") -> bool:
        """A running job whose worker died becomes interrupted, unless it was meanwhile claimed again; its running
        round and the cause are written in the same transaction."""
        with self.write():
            cur = self.db.execute(
                "update jobs set status = 'interrupted', pid = null "
                "where id = ? and status = 'running' and worker is ?",
                [job_id, worker],
            )
            if cur.rowcount != 1:
                return False
            self._settle_rounds(job_id, "interrupted")
            self.log(job_id, cause or f"interrupted: its worker {worker} is gone", "warning")
            return True

    def stale_jobs(self, older_than_s: float) -> dict[int, str]:
        """Running jobs whose heartbeat is older than `older_than_s` (or missing), each with how old it is."""
        stale = {}
        for r in self.db.query("select id, heartbeat_at, worker from jobs where status = 'running'"):
            beat = datetime.fromisoformat(r["heartbeat_at"]) if r["heartbeat_at"] else None
            age = (datetime.now(timezone.utc) - beat).total_seconds() if beat else None
            if age is None or age > older_than_s:
                when = "never" if age is None else f"{age:.0f} s ago"
                stale[r["id"]] = f"the heartbeat of {r['worker']} last beat {when} (stale after {older_than_s:g} s)"
        return stale

    def mark_stale_jobs(self, older_than_s: float) -> list[int]:
        """Running jobs whose heartbeat is stale (a dead or hung worker) become interrupted, whatever their
        worker's PID says: a PID can be reused by another process."""
        with self.write():
            return [
                job_id
                for job_id, why in self.stale_jobs(older_than_s).items()
                if self.interrupt_job(job_id, self.job(job_id).worker, f"interrupted: {why}")
            ]

    def log(self, job_id: int, message: str, level: str = "info") -> None:
        with self.write():
            self.db["job_events"].insert({"job_id": job_id, "at": now(), "level": level, "message": message})

    def events(self, job_id: int, after_id: int = 0, limit: int = 200) -> list[dict]:
        return list(
            self.db.query(
                "select * from (select * from job_events where job_id = ? and id > ? order by id desc limit ?) "
                "order by id",
                [job_id, after_id, limit],
            )
        )

    # rounds
    def round(self, job_id: int, round: int) -> Round | None:
        row = self._one("select * from rounds where job_id = ? and round = ?", [job_id, round])
        if row is None:
            return None
        row = dict(row)
        row["stages_done"] = json.loads(row["stages_done"] or "[]")
        return row_to(Round, row)

    def rounds(self, job_id: int) -> list[Round]:
        return [
            self.round(job_id, r["round"])
            for r in self.db.query("select round from rounds where job_id = ? order by round", [job_id])
        ]

    def stage_done(self, job_id: int, round: int, stage: str, **values) -> None:
        """Record a completed stage; resume starts after the last one recorded."""
        with self.write():
            current = self.round(job_id, round) or Round(job_id=job_id, round=round, started_at=now())
            if stage not in current.stages_done:
                current.stages_done.append(stage)
            row = {
                "job_id": job_id,
                "round": round,
                "status": values.pop("status", current.status),
                "stages_done": json.dumps(current.stages_done),
                "adapter_path": current.adapter_path,
                "started_at": current.started_at,
                "finished_at": current.finished_at,
            }
            row.update(values)
            if current.id is None:
                self.db["rounds"].insert(row)
            else:
                self.db["rounds"].update(current.id, row)

    def approve_review(self, job_id: int, round: int, actor: str = "human") -> None:
        """The person is done reviewing a round paused at its gate: training may go on."""
        with self.write():
            self.stage_done(job_id, round, "review")
            self.log(job_id, f"[round {round} review] approved by {actor}")
            self.requeue(job_id)

    def set_round_status(self, job_id: int, round: int, status: str) -> None:
        with self.write():
            if self.round(job_id, round) is None:
                self.db["rounds"].insert(
                    {
                        "job_id": job_id,
                        "round": round,
                        "status": status,
                        "stages_done": "[]",
                        "adapter_path": "",
                        "started_at": now(),
                    }
                )
            else:
                self.db.execute("update rounds set status = ? where job_id = ? and round = ?", [status, job_id, round])

    # consistency (launch.py doctor)
    def integrity_problems(self) -> list[str]:
        """SQLite's own check of the file, and rows whose foreign keys point nowhere."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
        problems += [
            f"{table} row {rowid} points to a missing {parent} row"
            for table, rowid, parent, _ in self.db.execute("PRAGMA foreign_key_check").fetchall()
        ]
        return problems

    def rounds_out_of_step(self) -> list[dict]:
        """Rounds whose state contradicts their job's: running while the job is not, at review while the job has
        ended, or of a job that does not exist. Each with job_status (None: no job)."""
        return list(
            self.db.query(
                "select r.job_id, r.round, r.status, j.status job_status "
                "from rounds r left join jobs j on j.id = r.job_id "
                "where j.id is null or (r.status = 'running' and j.status != 'running') "
                "or (r.status = 'review' and j.status not in ('paused', 'queued', 'running')) "  # queued: approved
                "order by r.job_id, r.round"
            )
        )
