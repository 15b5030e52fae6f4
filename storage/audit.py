"""The blind audit: each round's uniform random sample of judged pairs, which a person labels without seeing the
judge's label, and the answers that estimate the round's self-label accuracy (engine.method.agreement)."""

from __future__ import annotations

from storage.base import StoreBase
from storage.records import AuditAnswer

# a person's first audit-order label of each pair that no undo took back: later labels of the same pair may have
# seen the judge's label in the review queue, or a first answer that was undone was a slip
FIRST_BLIND_LABEL_SQL = (
    "select min(e.id) from label_events e where e.pair_id = a.pair_id and e.via = 'audit' and "
    "e.new_source = 'human' and e.undoes is null and e.id not in "
    "(select undoes from label_events where pair_id = a.pair_id and undoes is not null)"
)


class AuditStore(StoreBase):
    def set_audit_sample(self, job_id: int, round_index: int, pair_ids: list[int]) -> list[int]:
        """Store a round's audit sample in draw order and return it. Idempotent: once a round has a sample it
        stays, and a resumed stage that writes one again gets the stored sample back, never a second one."""
        if len(set(pair_ids)) != len(pair_ids):
            raise ValueError("an audit sample holds each pair once")
        with self.write():
            stored = self.audit_sample_ids(job_id, round_index)
            if stored:
                return stored
            self._check_round_pairs(job_id, round_index, pair_ids)
            self.db["audit_pairs"].insert_all(
                [
                    {"pair_id": pair_id, "job_id": job_id, "round": round_index, "position": position}
                    for position, pair_id in enumerate(pair_ids)
                ],
                batch_size=500,
            )
        return list(pair_ids)

    def _check_round_pairs(self, job_id: int, round_index: int, pair_ids: list[int]) -> None:
        """Every pair id must be a pair of this job's round: a sample of another round would estimate nothing."""
        found: set[int] = set()
        for start in range(0, len(pair_ids), 500):
            chunk = pair_ids[start : start + 500]
            found |= {
                r["id"]
                for r in self.db.query(
                    f"select id from pairs where job_id = ? and round = ? and id in ({','.join('?' * len(chunk))})",
                    [job_id, round_index, *chunk],
                )
            }
        strangers = [pair_id for pair_id in pair_ids if pair_id not in found]
        if strangers:
            raise ValueError(f"pairs {strangers[:10]} are not pairs of job {job_id}, round {round_index}")

    def audit_sample_ids(self, job_id: int, round_index: int) -> list[int]:
        """The round's audit sample in draw order; empty when it has none."""
        rows = self.db.query(
            "select pair_id from audit_pairs where job_id = ? and round = ? order by position", [job_id, round_index]
        )
        return [r["pair_id"] for r in rows]

    def audit_answers(self, job_id: int, round_index: int) -> list[AuditAnswer]:
        """Per audit pair a person has labelled blind (set_label via "audit"), in draw order: their first such
        label and the judge's label, for engine.method.agreement.audit_estimate. Pairs not yet answered are
        left out."""
        rows = self.db.query(
            "select a.pair_id, e.new_label person_label, p.judge_label, e.id event_id from audit_pairs a "
            "join pairs p on p.id = a.pair_id "
            f"join label_events e on e.id = ({FIRST_BLIND_LABEL_SQL}) "
            "where a.job_id = ? and a.round = ? and p.judge_label in ('a', 'b') order by a.position",
            [job_id, round_index],
        )
        return [AuditAnswer(**r) for r in rows]

    def audit_unanswered(self, pair_ids: list[int]) -> set[int]:
        """Which of these pairs are audit pairs nobody has answered blind yet (no first audit-order label): the
        audit order shows them without the judge's label."""
        unanswered: set[int] = set()
        for start in range(0, len(pair_ids), 500):
            chunk = pair_ids[start : start + 500]
            rows = self.db.query(
                f"select a.pair_id from audit_pairs a where a.pair_id in ({','.join('?' * len(chunk))}) "
                f"and ({FIRST_BLIND_LABEL_SQL}) is null",
                chunk,
            )
            unanswered |= {r["pair_id"] for r in rows}
        return unanswered

    def in_audit_sample(self, pair_id: int) -> bool:
        return self._one("select 1 from audit_pairs where pair_id = ?", [pair_id]) is not None

    def audit_rounds(self, job_id: int) -> list[tuple[int, int]]:
        """(round, sample size) of each round of the job that has an audit sample, in round order."""
        rows = self.db.query(
            "select round, count(*) n from audit_pairs where job_id = ? group by round order by round", [job_id]
        )
        return [(r["round"], r["n"]) for r in rows]
