"""The Insight tab's read-only views of a project's judged pairs: label sources, the judge's calibration by
confidence and by rank, the margin histogram, chosen and rejected lengths per round, a round's sample pairs."""

from __future__ import annotations

from storage.pairs import RANK_SQL, PairStore, _pair_from_row
from storage.records import Pair


class InsightStore(PairStore):
    def label_source_counts(self, project_id: int) -> dict[str, int]:
        """How many judged pairs each label source holds (self, human, gold, ...)."""
        rows = self.db.query(
            "select label_source, count(*) n from pairs where project_id = ? and label is not null "
            "group by label_source",
            [project_id],
        )
        return {r["label_source"] or "": r["n"] for r in rows}

    def confidence_calibration(self, project_id: int, job_id: int | None = None, width: float = 0.05) -> list[dict]:
        """Judged pairs binned by the judge's confidence, with how often the judge agrees with the gold reward
        (where both gold scores exist and differ) and with a person's a/b label: a calibration curve."""
        clause, params = self._pair_scope(project_id, job_id)
        top = int(round(0.5 / width)) - 1
        gold = "gold_a is not null and gold_b is not null and gold_a != gold_b and judge_label in ('a', 'b')"
        human = "label_source = 'human' and label in ('a', 'b') and judge_label in ('a', 'b')"
        sql = (
            f"select min(max(cast((confidence - 0.5) / ? as int), 0), ?) bin, count(*) n, "
            f"avg(confidence) mean_confidence, sum({gold}) n_gold, "
            f"sum({gold} and judge_label = case when gold_a > gold_b then 'a' else 'b' end) agree_gold, "
            f"sum({human}) n_human, sum({human} and judge_label = label) agree_human "
            f"from pairs not indexed where {clause} and confidence is not null group by bin order by bin"
        )
        rows = list(self.db.query(sql, [width, top] + params))
        for r in rows:
            r["low"], r["high"] = 0.5 + r["bin"] * width, 0.5 + (r["bin"] + 1) * width
        return rows

    def margin_histogram(self, project_id: int, job_id: int | None = None, bins: int = 30) -> list[dict]:
        """Counts of the judge's margin r_chosen − r_rejected in equal bins, split by the noise flag."""
        clause, params = self._pair_scope(project_id, job_id)
        span = self._one(
            f"select min(margin) lo, max(margin) hi from pairs not indexed where {clause} and margin is not null",
            params,
        )
        if span is None or span["lo"] is None:
            return []
        lo, hi = span["lo"], span["hi"]
        width = (hi - lo) / bins if hi > lo else 1.0
        sql = (
            f"select min(cast((margin - ?) / ? as int), ?) bin, coalesce(noisy, 0) noisy, count(*) n "
            f"from pairs not indexed where {clause} and margin is not null "
            "group by bin, coalesce(noisy, 0) order by bin"
        )
        rows = list(self.db.query(sql, [lo, width, bins - 1] + params))
        for r in rows:
            r["low"], r["high"] = lo + r["bin"] * width, lo + (r["bin"] + 1) * width
        return rows

    def length_by_round(self, project_id: int, job_id: int | None = None) -> list[dict]:
        """Mean length of the chosen and the rejected answer per round, under the label in force (a/b only):
        tokens where the generator counted them, and characters."""
        clause, params = self._pair_scope(project_id, job_id)
        sql = (
            "select round, count(*) n, "
            "avg(case label when 'a' then tokens_a else tokens_b end) chosen_tokens, "
            "avg(case label when 'a' then tokens_b else tokens_a end) rejected_tokens, "
            "avg(case label when 'a' then length(response_a) else length(response_b) end) chosen_chars, "
            "avg(case label when 'a' then length(response_b) else length(response_a) end) rejected_chars "
            f"from pairs not indexed where {clause} and label in ('a', 'b') group by round order by round"
        )
        return list(self.db.query(sql, params))

    def round_samples(
        self, project_id: int, round: int, job_id: int | None = None, search: str = "", limit: int = 20
    ) -> list[Pair]:
        """A few labelled pairs of one round, the least ambiguous first, to read its generations."""
        sql = "select * from pairs where project_id = ? and round = ? and label is not null"
        params: list = [project_id, round]
        if job_id is not None:
            sql += " and job_id = ?"
            params.append(job_id)
        if search:
            sql += " and prompt like ?"
            params.append(f"%{search}%")
        rows = self.db.query(sql + " order by id limit ?", params + [limit])
        return [_pair_from_row(r) for r in rows]

    def rank_calibration(self, project_id: int, job_id: int | None = None, bins: int = 5) -> list[dict]:
        """Judged pairs in equal bins of within-round rank, with their confidence range and how often the judge
        agrees with the gold reward (both scores known and different) and with a person's a/b label."""
        clause, params = self._pair_scope(project_id, job_id)
        gold = "gold_a is not null and gold_b is not null and gold_a != gold_b and judge_label in ('a', 'b')"
        human = "label_source = 'human' and label in ('a', 'b') and judge_label in ('a', 'b')"
        sql = (
            f"select min(cast(r.rank * ? as int), ?) bin, count(*) n, min(confidence) min_confidence, "
            f"max(confidence) max_confidence, avg(confidence) mean_confidence, sum({gold}) n_gold, "
            f"sum({gold} and judge_label = case when gold_a > gold_b then 'a' else 'b' end) agree_gold, "
            f"sum({human}) n_human, sum({human} and judge_label = label) agree_human "
            f"from pairs p join ({RANK_SQL}) r on r.id = p.id where {clause.replace('project_id', 'p.project_id')} "
            "group by bin order by bin"
        )
        rows = list(self.db.query(sql, [bins, bins - 1, project_id] + params))
        for r in rows:
            r["low"], r["high"] = r["bin"] / bins, (r["bin"] + 1) / bins
        return rows
