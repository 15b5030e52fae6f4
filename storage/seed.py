"""The seed builder: a seed prompt (a seed example without a pair) gets answers sampled from the model, a person
ranks them (best and worst, or writes a better answer, or says they are all equal, or skips the prompt), and each
ranked prompt becomes one seed pair with label source "human".

Every decision is one row of seed_rankings with its actor; an undo marks the actor's latest row undone and never
deletes it, so the table is the audit trail. The decision in force on a prompt is its latest row not undone. A
written answer stays among the prompt's answers after its ranking is undone: a person's text is never thrown
away. Bad input raises ValueError (NotFound for an unknown id) and writes nothing."""

from __future__ import annotations

import json

from storage.base import StoreBase, now, row_to
from storage.projects import example_from_row
from storage.records import SEED_STATUSES, Example, SeedAnswer, SeedProgress, SeedRanking

SEED_PROMPT_SQL = "role = 'seed' and chosen is null and rejected is null"
# the decision in force on each prompt of a project: its latest ranking row that no undo took back
IN_FORCE_SQL = (
    "select * from seed_rankings where id in (select max(id) from seed_rankings "
    "where project_id = ? and undone_at is null group by example_id)"
)
HAS_ANSWERS_SQL = "exists (select 1 from seed_answers a where a.example_id = e.id)"


def _ranking_from_row(row: dict) -> SeedRanking:
    row = dict(row)
    row["order"] = json.loads(row.pop("order_json") or "[]")
    return row_to(SeedRanking, row)


class SeedStore(StoreBase):
    # seed prompts and their answers
    def seed_prompts(self, project_id: int) -> list[Example]:
        """The project's seed examples that have no pair, in import order."""
        rows = self.db.query(
            f"select * from examples where project_id = ? and {SEED_PROMPT_SQL} order by id", [project_id]
        )
        return [example_from_row(r) for r in rows]

    def seed_prompt(self, project_id: int, example_id: int) -> Example:
        """One seed prompt of the project; NotFound for an unknown id, ValueError for an example of another project
        or one that is not a seed prompt."""
        ex = example_from_row(self._found("example", example_id, "select * from examples where id = ?", [example_id]))
        if ex.project_id != project_id:
            raise ValueError(f"example {example_id} belongs to another project")
        if not ex.is_seed_prompt:
            what = "a seed pair" if ex.role == "seed" else f"a {ex.role} example"
            raise ValueError(f"example {example_id} is {what}, not a seed prompt")
        return ex

    def seed_answers(self, example_id: int) -> list[SeedAnswer]:
        """A seed prompt's answers, model samples first, in sample order."""
        rows = self.db.query("select * from seed_answers where example_id = ? order by sample_index", [example_id])
        return [row_to(SeedAnswer, r) for r in rows]

    def add_seed_answers(self, project_id: int, example_id: int, answers: list[SeedAnswer]) -> int:
        """Write one prompt's sampled answers in one transaction; returns how many were written. A prompt that
        already has model answers keeps them and gets none (0): a resumed sampling job never adds a second set."""
        if any(a.example_id != example_id for a in answers):
            raise ValueError(f"every answer must be an answer to example {example_id}")
        if any(a.source != "model" for a in answers):
            raise ValueError(
                "add_seed_answers writes sampled answers; a person's answer goes through write_seed_answer"
            )
        if len({a.sample_index for a in answers}) != len(answers):
            raise ValueError("each answer needs its own sample_index")
        with self.write():
            self.seed_prompt(project_id, example_id)
            if self._one("select 1 from seed_answers where example_id = ? and source = 'model'", [example_id]):
                return 0
            self.db["seed_answers"].insert_all(
                [
                    {
                        "example_id": example_id,
                        "sample_index": a.sample_index,
                        "text": a.text,
                        "logp": a.logp,
                        "tokens": a.tokens,
                        "source": a.source,
                        "created_at": a.created_at or now(),
                    }
                    for a in answers
                ]
            )
        return len(answers)

    # a person's decisions
    def rank_seed(
        self, project_id: int, example_id: int, best_answer_id: int, worst_answer_id: int, actor: str
    ) -> SeedRanking:
        """The person's best and worst of a prompt's answers; the others sit between them, unordered."""
        with self.write():
            return self._decide(project_id, example_id, "ranked", actor, best_answer_id, worst_answer_id)

    def write_seed_answer(
        self, project_id: int, example_id: int, text: str, worst_answer_id: int, actor: str
    ) -> SeedRanking:
        """A better answer the person wrote: stored as the prompt's next answer (source "human") and ranked best,
        above every sampled answer, with `worst_answer_id` the worst. One action: an undo takes back the ranking."""
        text = text.strip()
        if not text:
            raise ValueError("the written answer is empty")
        with self.write():
            self._check_decision(project_id, example_id, actor)
            answers = self.seed_answers(example_id)
            worst = self._answer_of(example_id, answers, worst_answer_id)
            if worst.text.strip() == text:
                raise ValueError(f"the written answer is the same text as answer {worst_answer_id}, the worst")
            written_id = (
                self.db["seed_answers"]
                .insert(
                    {
                        "example_id": example_id,
                        "sample_index": max(a.sample_index for a in answers) + 1,
                        "text": text,
                        "logp": None,
                        "tokens": None,
                        "source": "human",
                        "created_at": now(),
                    }
                )
                .last_pk
            )
            return self._decide(project_id, example_id, "ranked", actor, written_id, worst_answer_id)

    def mark_seed(self, project_id: int, example_id: int, status: str, actor: str) -> SeedRanking:
        """ "equal": the answers are all alike, no pair comes of them; "skip": leave the prompt out of the seed."""
        if status not in SEED_STATUSES or status == "ranked":
            raise ValueError(f"a prompt is marked 'equal' or 'skip', not {status!r} (rank_seed ranks it)")
        with self.write():
            return self._decide(project_id, example_id, status, actor)

    def _check_decision(self, project_id: int, example_id: int, actor: str) -> None:
        if not actor or not actor.strip():
            raise ValueError("a seed decision needs an actor")
        self.seed_prompt(project_id, example_id)

    def _answer_of(self, example_id: int, answers: list[SeedAnswer], answer_id: int) -> SeedAnswer:
        _require_answers(example_id, answers)
        found = next((a for a in answers if a.id == answer_id), None)
        if found is None:
            raise ValueError(f"answer {answer_id} is not an answer to seed prompt {example_id}")
        return found

    def _decide(
        self,
        project_id: int,
        example_id: int,
        status: str,
        actor: str,
        best_answer_id: int | None = None,
        worst_answer_id: int | None = None,
    ) -> SeedRanking:
        """Check a decision against the prompt's answers and append it (inside the caller's transaction)."""
        self._check_decision(project_id, example_id, actor)
        answers = self.seed_answers(example_id)
        order: list[int] = []
        if status == "ranked":
            if best_answer_id == worst_answer_id:
                raise ValueError("the best and the worst answer must be two different answers")
            best = self._answer_of(example_id, answers, best_answer_id)
            worst = self._answer_of(example_id, answers, worst_answer_id)
            if best.text.strip() == worst.text.strip():
                raise ValueError(f"answers {best.id} and {worst.id} are the same text: mark the prompt equal instead")
            middle = [a.id for a in answers if a.id not in (best.id, worst.id)]
            order = [best.id, *middle, worst.id]
        elif status == "equal":
            _require_answers(example_id, answers)
            order = [a.id for a in answers]
        ranking = SeedRanking(
            project_id=project_id,
            example_id=example_id,
            status=status,
            actor=actor,
            best_answer_id=best_answer_id,
            worst_answer_id=worst_answer_id,
            order=order,
            created_at=now(),
        )
        ranking.id = (
            self.db["seed_rankings"]
            .insert(
                {
                    "project_id": project_id,
                    "example_id": example_id,
                    "best_answer_id": best_answer_id,
                    "worst_answer_id": worst_answer_id,
                    "status": status,
                    "order_json": json.dumps(order),
                    "actor": actor,
                    "created_at": ranking.created_at,
                    "undone_at": None,
                }
            )
            .last_pk
        )
        return ranking

    def undo_seed(self, project_id: int, actor: str) -> SeedRanking | None:
        """Take back `actor`'s latest decision in the project that is not undone yet; another person's decisions
        are left alone. Returns the decision undone, or None when the actor has none left."""
        with self.write():
            row = self._one(
                "select * from seed_rankings where project_id = ? and actor = ? and undone_at is null "
                "order by id desc limit 1",
                [project_id, actor],
            )
            if row is None:
                return None
            undone = _ranking_from_row(row)
            undone.undone_at = now()
            self.db["seed_rankings"].update(undone.id, {"undone_at": undone.undone_at})
        return undone

    # reading the decisions
    def seed_ranking(self, example_id: int) -> SeedRanking | None:
        """The decision in force on a seed prompt (its latest not undone), or None."""
        row = self._one(
            "select * from seed_rankings where example_id = ? and undone_at is null order by id desc limit 1",
            [example_id],
        )
        return _ranking_from_row(row) if row else None

    def seed_rankings(self, project_id: int) -> list[SeedRanking]:
        """Every decision of the project, undone ones included, oldest first: the seed builder's audit trail."""
        rows = self.db.query("select * from seed_rankings where project_id = ? order by id", [project_id])
        return [_ranking_from_row(r) for r in rows]

    def next_unranked_seed_prompt(self, project_id: int, after: int | None = None) -> Example | None:
        """The first seed prompt after example `after` (by id) that has answers and no decision in force; past the
        last it wraps around to the first. None when every prompt with answers is decided."""
        sql = (
            f"select * from examples e where e.project_id = ? and {SEED_PROMPT_SQL} and {HAS_ANSWERS_SQL} "
            f"and e.id not in (select example_id from ({IN_FORCE_SQL})) and e.id > ? order by e.id limit 1"
        )
        row = self._one(sql, [project_id, project_id, after if after is not None else -1])
        if row is None and after is not None:
            row = self._one(sql, [project_id, project_id, -1])
        return example_from_row(row) if row else None

    def seed_progress(self, project_id: int) -> SeedProgress:
        """How many seed prompts wait for answers, wait for a person, or were decided, and the uploaded pairs."""
        row = self._one(
            f"select count(*) prompts, "
            f"coalesce(sum(r.status is null and not {HAS_ANSWERS_SQL}), 0) without_answers, "
            f"coalesce(sum(r.status is null and {HAS_ANSWERS_SQL}), 0) unranked, "
            "coalesce(sum(r.status = 'ranked'), 0) ranked, coalesce(sum(r.status = 'equal'), 0) equal, "
            "coalesce(sum(r.status = 'skip'), 0) skipped "
            f"from examples e left join ({IN_FORCE_SQL}) r on r.example_id = e.id "
            f"where e.project_id = ? and {SEED_PROMPT_SQL}",
            [project_id, project_id],
        )
        uploaded = self._one(
            "select count(*) n from examples where project_id = ? and role = 'seed' and chosen is not null",
            [project_id],
        )["n"]
        return SeedProgress(uploaded_pairs=uploaded, **row)

    # the pairs the seed round trains on
    def seed_pairs(self, project_id: int) -> list[Example]:
        """The seed round's pairs: every uploaded seed pair (label_source "seed"), then one pair per ranked seed
        prompt, best over worst (label_source "human"), in prompt order."""
        return self._uploaded_pairs(project_id) + [
            _pair(prompt, answers[ranking.best_answer_id], answers[ranking.worst_answer_id])
            for ranking, prompt, answers in self._ranked(project_id)
        ]

    def seed_ordered_pairs(self, project_id: int) -> list[Example]:
        """Like seed_pairs, but every ordered pair each ranking implies: best over worst, best over each middle
        answer, each middle answer over worst. N answers give 2N − 3 pairs."""
        pairs = self._uploaded_pairs(project_id)
        for ranking, prompt, answers in self._ranked(project_id):
            best, *middle, worst = [answers[answer_id] for answer_id in ranking.order]
            pairs += (
                [_pair(prompt, best, worst)]
                + [_pair(prompt, best, m) for m in middle]
                + [_pair(prompt, m, worst) for m in middle]
            )
        return pairs

    def _uploaded_pairs(self, project_id: int) -> list[Example]:
        rows = self.db.query(
            "select * from examples where project_id = ? and role = 'seed' and chosen is not null order by id",
            [project_id],
        )
        return [example_from_row({**r, "label_source": "seed"}) for r in rows]

    def _ranked(self, project_id: int) -> list[tuple[SeedRanking, Example, dict[int, SeedAnswer]]]:
        """The rankings in force with status ranked, each with its prompt and the prompt's answers by id."""
        rankings = [
            _ranking_from_row(r)
            for r in self.db.query(
                f"select * from ({IN_FORCE_SQL}) where status = 'ranked' order by example_id", [project_id]
            )
        ]
        out = []
        for ranking in rankings:
            prompt = example_from_row(self._one("select * from examples where id = ?", [ranking.example_id]))
            out.append((ranking, prompt, {a.id: a for a in self.seed_answers(ranking.example_id)}))
        return out


def _require_answers(example_id: int, answers: list[SeedAnswer]) -> None:
    if not answers:
        raise ValueError(f"seed prompt {example_id} has no answers yet: sample some first")


def _pair(prompt: Example, chosen: SeedAnswer, rejected: SeedAnswer) -> Example:
    """A seed pair made of a ranked prompt's two answers, with the prompt's id and origin."""
    return Example(
        role="seed",
        prompt=prompt.prompt,
        chosen=chosen.text,
        rejected=rejected.text,
        source_file=prompt.source_file,
        source_line=prompt.source_line,
        conversational=prompt.conversational,
        id=prompt.id,
        project_id=prompt.project_id,
        label_source="human",
    )
