"""People on a round: who reviews which pair (assignments), each person's latest label of a pair, and the rule that
turns several people's labels of one pair into the label it trains on (`people_verdict`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from storage.base import now
from storage.pairs import PairStore
from storage.records import Pair


def _person_labels_sql(scope: str) -> str:
    """Each person's latest label of each pair in `scope` (a condition on the pair id) that no undo took back.
    Only `human` labels are a person's reading: a bulk accept (source accepted) is nobody's answer."""
    return (
        "select e.pair_id, e.actor person, e.new_label label from label_events e where e.id in ("
        f"select max(id) from label_events where new_source = 'human' and undoes is null and {scope} "
        "and id not in (select undoes from label_events where undoes is not null) group by pair_id, actor)"
    )


def people_verdict(labels: Iterable[str]) -> str | None:
    """The disagreement rule: the label more people gave than any other (their latest labels; a, b, tie and
    both_bad are four answers); None when two or more labels share the top count: the people tie, and the pair
    is left out of training."""
    ranked = Counter(labels).most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


class PeopleStore(PairStore):
    def round_pair_ids(self, job_id: int, round_index: int) -> list[int]:
        """The judged pairs of one round of a run (its review queue), by id."""
        rows = self.db.query(
            "select id from pairs where job_id = ? and round = ? and label is not null order by id",
            [job_id, round_index],
        )
        return [r["id"] for r in rows]

    def latest_round_job(self, project_id: int, round_index: int) -> int | None:
        """The project's newest run that has judged pairs in this round; None when none has."""
        row = self._one(
            "select max(job_id) job_id from pairs where project_id = ? and round = ? and label is not null",
            [project_id, round_index],
        )
        return row["job_id"] if row else None

    def assign_round(self, job_id: int, round_index: int, assignment: dict[int, list[str]]) -> None:
        """Replace the round's assignment with this one (pair id → the people who review it), in one transaction."""
        strangers = set(assignment) - set(self.round_pair_ids(job_id, round_index))
        if strangers:
            raise ValueError(
                f"pairs {sorted(strangers)[:10]} are not judged pairs of job {job_id}, round {round_index}"
            )
        at = now()
        with self.write():
            self.db.execute("delete from assignments where job_id = ? and round = ?", [job_id, round_index])
            self.db["assignments"].insert_all(
                (
                    {"pair_id": pair_id, "person": person, "job_id": job_id, "round": round_index, "created_at": at}
                    for pair_id, people in assignment.items()
                    for person in people
                ),
                batch_size=500,
            )

    def round_assignment(self, job_id: int, round_index: int) -> dict[int, list[str]]:
        """The round's assignment: pair id → its people, in the order they were given; empty when it has none."""
        out: dict[int, list[str]] = {}
        for r in self.db.query(
            "select pair_id, person from assignments where job_id = ? and round = ? order by pair_id, rowid",
            [job_id, round_index],
        ):
            out.setdefault(r["pair_id"], []).append(r["person"])
        return out

    def labels_by_person(self, pair_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """Per pair (of those given that a person labelled), each person's latest label not undone, in the order
        those labels were given."""
        ids, out = list(pair_ids), {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            scope = f"pair_id in ({','.join('?' * len(chunk))})"
            for r in self.db.query(_person_labels_sql(scope) + " order by e.id", chunk):
                out.setdefault(r["pair_id"], {})[r["person"]] = r["label"]
        return out

    def project_labels_by_person(
        self, project_id: int, job_id: int | None = None, round_index: int | None = None
    ) -> tuple[dict[int, dict[str, str]], dict[int, str]]:
        """labels_by_person of every pair of the project (or of one run, or one round of it) a person labelled,
        and the self-judge's label of those pairs."""
        scope, params = "pair_id in (select id from pairs where project_id = ?", [project_id]
        for column, value in (("job_id", job_id), ("round", round_index)):
            if value is not None:
                scope += f" and {column} = ?"
                params.append(value)
        labels: dict[int, dict[str, str]] = {}
        judge: dict[int, str] = {}
        sql = (
            f"select l.pair_id, l.person, l.label, p.judge_label from ({_person_labels_sql(scope + ')')}) l "
            "join pairs p on p.id = l.pair_id order by l.pair_id, l.person"
        )
        for r in self.db.query(sql, params):
            labels.setdefault(r["pair_id"], {})[r["person"]] = r["label"]
            judge[r["pair_id"]] = r["judge_label"]
        return labels, judge

    def as_trained(self, pairs: list[Pair]) -> list[Pair]:
        """The pairs with the label they train on (and export with): where two or more people labelled a pair, the
        people_verdict of their latest labels, source human; a pair they tie on is left out. A pair one person (or
        nobody) labelled keeps its label in force. A written better answer stays chosen, opposite the answer the
        verdict rejects."""
        by_person = self.labels_by_person(p.id for p in pairs if p.label_source == "human")
        out = []
        for p in pairs:
            people = by_person.get(p.id, {})
            if len(people) < 2:
                out.append(p)
                continue
            verdict = people_verdict(people.values())
            if verdict is not None:
                out.append(p if verdict == p.label else replace(p, label=verdict, label_source="human"))
        return out

    def assignment_progress(self, project_id: int, person: str | None = None) -> list[dict]:
        """Per run, round and person with an assignment: pairs assigned, how many of them the person has labelled
        (a label of theirs not undone), and the rest."""
        scope = "pair_id in (select pair_id from assignments)"
        sql = (
            "select a.job_id, a.round, a.person, count(*) assigned, count(l.pair_id) labelled from assignments a "
            f"join pairs p on p.id = a.pair_id left join ({_person_labels_sql(scope)}) l "
            "on l.pair_id = a.pair_id and l.person = a.person where p.project_id = ?"
        )
        params: list = [project_id]
        if person is not None:
            sql += " and a.person = ?"
            params.append(person)
        rows = list(
            self.db.query(sql + " group by a.job_id, a.round, a.person order by a.job_id, a.round, a.person", params)
        )
        for r in rows:
            r["remaining"] = r["assigned"] - r["labelled"]
        return rows
