"""People on a round, against a real SQLite file: a round's queue split among named reviewers (balanced,
deterministic, each pair to overlap + 1 different people, labels kept on a re-assignment, bad input refused with
nothing changed), each person's own queue and progress, the rule that decides a pair several people labelled
(majority; a tie between people leaves it out of training; one person's label unchanged), the dataset export's
labels_by_person column, and the agreement the studio reports."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from app import actions
from app.actions import ActionError, ReviewQuery, opened
from engine.config import RunConfig
from engine.data.export import ExportRequest
from engine.data.export.dataset import dataset_rows
from engine.runtime.context import StageContext
from engine.runtime.round_data import training_rows
from storage import Example, Job, Pair, Store, connect, migrate, schema_version
from storage.db import SCHEMA_VERSION
from storage.people import people_verdict

PEOPLE = ["ann", "bob", "cy"]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "people.db")


def judged_round(db: str, n: int = 10, rounds: int = 1) -> tuple[int, dict[int, list[int]]]:
    """Project "p" with one run whose rounds hold n judged pairs each (self label = judge label: a, b, a, ...)."""
    with opened(db) as store:
        project = store.ensure_project("p")
        store.add_examples(
            project.id, [Example(role="pool", prompt=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]
        )
        examples = [e.id for e in store.examples(project.id, "pool")]
        job = store.enqueue(Job(project_id=project.id, kind="run"))
        for r in range(1, rounds + 1):
            store.add_pairs(
                [
                    Pair(
                        job_id=job,
                        round=r,
                        prompt=[{"role": "user", "content": f"q{i}"}],
                        response_a=f"A{i}",
                        response_b=f"B{i}",
                        example_id=e,
                        project_id=project.id,
                        confidence=0.6 + i / 100,
                        margin=0.4 + i / 100,
                        label="ab"[i % 2],
                        label_source="self",
                        judge_label="ab"[i % 2],
                    )
                    for i, e in enumerate(examples)
                ]
            )
        return job, {r: [p.id for p in store.pairs(job, r)] for r in range(1, rounds + 1)}


def label(db: str, pair_id: int, answer: str, person: str) -> None:
    actions.set_label(db, pair_id, answer, actor=person)


# the assignment ------------------------------------------------------------------------------------------------


def test_a_database_of_the_previous_version_gains_the_assignments_table(tmp_path):
    path = tmp_path / "v9.db"
    db = connect(path)
    migrate(db, target=9)
    assert "assignments" not in db.table_names()
    db.conn.close()
    store = Store(path)
    assert schema_version(store.db) == SCHEMA_VERSION == 10 and "assignments" in store.db.table_names()
    store.close()


def test_without_overlap_each_pair_goes_to_one_person_and_everyone_gets_about_the_same_count():
    got = actions.balanced_assignment(list(range(1, 11)), PEOPLE, 0)
    assert all(len(people) == 1 for people in got.values()) and sorted(got) == list(range(1, 11))
    assert Counter(p for people in got.values() for p in people) == {"ann": 4, "bob": 3, "cy": 3}


def test_with_overlap_one_every_pair_goes_to_exactly_two_different_people_balanced_and_deterministic():
    ids = list(range(100, 111))  # 11 pairs × 2 places = 22 over 3 people: 8, 7, 7
    got = actions.balanced_assignment(ids, PEOPLE, 1)
    assert all(len(people) == 2 and len(set(people)) == 2 for people in got.values())
    assert sorted(Counter(p for people in got.values() for p in people).values()) == [7, 7, 8]
    shuffled = ids[:]
    random.Random(3).shuffle(shuffled)
    assert actions.balanced_assignment(shuffled, PEOPLE, 1) == got
    for pairs, people, overlap in ((37, 4, 1), (50, 5, 2), (9, 2, 0)):
        counts = Counter(
            p
            for chosen in actions.balanced_assignment(list(range(pairs)), list("pqrst")[:people], overlap).values()
            for p in chosen
        )
        assert max(counts.values()) - min(counts.values()) <= 1 and sum(counts.values()) == pairs * (overlap + 1)


def test_a_pair_stays_with_the_people_who_labelled_it_and_the_rest_balances_around_them():
    labelled = {1: {"cy"}, 2: {"cy"}, 3: {"cy", "bob"}, 4: {"zed"}}  # zed is not among the people named
    got = actions.balanced_assignment([1, 2, 3, 4, 5, 6], PEOPLE, 0, labelled)
    assert got[1] == ["cy"] and got[2] == ["cy"] and got[3] == ["bob"]  # one place: the first named who labelled
    assert Counter(p for people in got.values() for p in people) == {"ann": 2, "bob": 2, "cy": 2}


def test_assign_review_splits_the_round_and_a_reassignment_keeps_every_label(db):
    job, rounds = judged_round(db, n=10)
    first = actions.assign_review(db, "p", 1, "ann, bob", overlap=1)
    assert (first["job_id"], first["pairs"], first["people"], first["kept"]) == (job, 10, {"ann": 10, "bob": 10}, 0)
    label(db, rounds[1][0], "b", "bob")
    label(db, rounds[1][1], "tie", "ann")
    again = actions.assign_review(db, "p", 1, ["cy", "bob", "dee"], overlap=0)
    assert again["people"] == {"cy": 4, "bob": 3, "dee": 3} and again["kept"] == 1
    with opened(db) as store:
        assignment = store.round_assignment(job, 1)
        assert assignment[rounds[1][0]] == ["bob"]  # bob's label keeps the pair his
        assert sorted(assignment) == rounds[1] and all(len(people) == 1 for people in assignment.values())
        labels = {p.id: (p.label, p.label_source) for p in store.pairs(job, 1)}
    assert labels[rounds[1][0]] == ("b", "human") and labels[rounds[1][1]] == ("tie", "human")


@pytest.mark.parametrize(
    "args, message",
    [
        ((7, "ann, bob", 0), "no judged pairs in round 7"),
        ((1, "ann", 1), "overlap 1 gives each pair to 2 people: name at least 2 \\(got 1\\)"),
        ((1, "ann, , bob", 0), "person 2 of 3 has an empty name"),
        ((1, "", 0), "overlap 0 gives each pair to 1 person: name at least 1 \\(got 0\\)"),
        ((1, ["ann", "ann"], 0), "'ann' is named twice"),
        ((1, "ann, b b", 0), "person 'b b' must be 1-64 letters"),
        ((1, "ann, bob", -1), "overlap must be 0 or more"),
        ((1, "ann, zed", 0, None, ("ann", "bob")), "unknown person 'zed': the studio's accounts are ann, bob"),
        (("one", "ann, bob", 0), "round and overlap must be whole numbers"),
    ],
)
def test_bad_assignments_are_refused_with_what_is_wrong_and_change_nothing(db, args, message):
    job, _ = judged_round(db, n=4)
    before = actions.assign_review(db, "p", 1, "ann, bob", overlap=1)
    with pytest.raises(ActionError, match=message):
        actions.assign_review(db, "p", *args)
    with opened(db) as store:
        assert Counter(p for people in store.round_assignment(job, 1).values() for p in people) == before["people"]


def test_an_unknown_project_or_a_run_of_another_project_is_refused(db):
    job, _ = judged_round(db, n=4)
    with pytest.raises(ActionError, match="no project named 'q'"):
        actions.assign_review(db, "q", 1, "ann", 0)
    with opened(db) as store:
        store.ensure_project("other")
    with pytest.raises(ActionError, match=f"run {job} is not a run of project 'other'"):
        actions.assign_review(db, "other", 1, "ann", 0, job_id=job)


# a person's own queue and progress -------------------------------------------------------------------------


def test_my_queue_holds_my_pairs_shows_my_own_label_and_todo_drops_what_i_labelled(db):
    job, rounds = judged_round(db, n=6)
    actions.assign_review(db, "p", 1, "ann, bob", overlap=0)  # ann: pairs 1, 3, 5; bob: 2, 4, 6 (by id order)
    with opened(db) as store:
        ann = sorted(p for p, people in store.round_assignment(job, 1).items() if people == ["ann"])
    assert ann == rounds[1][0::2]
    mine = actions.review_page(db, "p", ReviewQuery(person="ann"), page_size=50)
    assert sorted(mine.pair_ids) == ann and mine.total == 3
    # bob labels one of ann's pairs: in ann's queue it still shows the judge's label, not bob's answer
    label(db, ann[0], "b", "bob")
    row = dict(zip(actions.REVIEW_COLUMNS, actions.review_page(db, "p", ReviewQuery(person="ann")).rows[0]))
    everyone = actions.review_page(db, "p", ReviewQuery(), page_size=50)
    assert (row["id"], row["label"], row["source"], row["by"]) == (ann[0], "a", "self", "")
    shown = {r[0]: dict(zip(actions.REVIEW_COLUMNS, r)) for r in everyone.rows}
    assert (shown[ann[0]]["label"], shown[ann[0]]["by"]) == ("b", "bob")
    # keep in ann's queue confirms what she sees (the judge's a), not bob's b
    view = actions.open_review(db, "p", ReviewQuery(person="ann", order="newest"), page_size=50, focus=ann[0])
    assert view.pair["label"] == "a" and view.pair["events"] == []  # bob's event is not in ann's history
    after = actions.label_in_review(db, view.cursor, "keep", actor="ann")
    assert after.event.new_label == "a" and after.event.actor == "ann"
    todo = actions.review_page(db, "p", ReviewQuery(person="ann", todo=True), page_size=50)
    assert sorted(todo.pair_ids) == ann[1:]
    progress = actions.person_progress(db, "p")
    assert [(r["person"], r["assigned"], r["labelled"], r["remaining"]) for r in progress] == [
        ("ann", 3, 1, 2),
        ("bob", 3, 0, 3),
    ]
    assert [r["person"] for r in actions.person_progress(db, "p", "bob")] == ["bob"]
    actions.undo_last_label(db, "p", "ann")  # an undone label is no longer hers
    assert actions.person_progress(db, "p", "ann")[0]["labelled"] == 0


# the disagreement rule -------------------------------------------------------------------------------------


def test_people_verdict_is_the_majority_and_a_tie_between_people_is_none():
    assert people_verdict(["a", "a", "b"]) == "a"
    assert people_verdict(["a", "b"]) is None and people_verdict(["a", "b", "tie"]) is None
    assert people_verdict(["tie", "tie", "a"]) == "tie"
    assert people_verdict(["b", "b", "a", "tie"]) == "b"
    assert people_verdict([]) is None


def test_training_follows_the_majority_leaves_a_tie_between_people_out_and_one_persons_label_as_is(db):
    job, rounds = judged_round(db, n=6)
    one, majority, tie, changed_mind, untouched = rounds[1][:5]
    label(db, one, "b", "ann")  # one person: unchanged (b, though the judge said a)
    for person, answer in (("ann", "b"), ("bob", "b"), ("cy", "a")):  # the last label in force is cy's a
        label(db, majority, answer, person)
    label(db, tie, "a", "ann")
    label(db, tie, "b", "bob")
    label(db, changed_mind, "b", "ann")  # ann's latest label is a, bob's a: they agree
    label(db, changed_mind, "a", "bob")
    label(db, changed_mind, "a", "ann")
    with opened(db) as store:
        assert store.pair(majority).label == "a" and store.pair(tie).label == "b"  # stored: the last person's
        rows = {r.pair_id: r for r in training_rows(StageContext(store, job, 1, RunConfig(), 1, "train"))}
        trained = {p.id: p.label for p in store.as_trained(store.pairs(job, 1))}
    pairs = {p: rows[p] for p in (one, majority, changed_mind, untouched)}
    assert tie not in rows and tie not in trained
    assert (pairs[one].chosen, pairs[majority].chosen, pairs[changed_mind].chosen) == ("B0", "B1", "A3")
    assert pairs[untouched].chosen == "A4" and not pairs[untouched].trusted
    assert all(pairs[p].trusted for p in (one, majority, changed_mind))
    assert trained[majority] == "b" and trained[one] == "b" and len(rows) == 5


def test_the_dataset_export_keeps_every_persons_answer_under_the_majority_label(db, tmp_path):
    job, rounds = judged_round(db, n=4)
    for person, answer in (("ann", "b"), ("bob", "b"), ("cy", "a")):
        label(db, rounds[1][0], answer, person)
    label(db, rounds[1][1], "a", "ann")
    label(db, rounds[1][1], "b", "bob")  # a tie between people: not exported
    label(db, rounds[1][2], "a", "bob")
    with opened(db) as store:
        rows, _ = dataset_rows(
            store, store.project("p"), ExportRequest("p", "dataset", str(tmp_path / "out")), lambda *a: None
        )
    got = {r.prompt[0]["content"]: (r.chosen, r.source, r.labels_by_person) for r in rows}
    assert got == {
        "q0": (
            "B0",
            "human",
            [{"person": "ann", "label": "b"}, {"person": "bob", "label": "b"}, {"person": "cy", "label": "a"}],
        ),
        "q2": ("A2", "human", [{"person": "bob", "label": "a"}]),
        "q3": ("B3", "self", []),
    }
    assert rows[0].record(False)["labels_by_person"][2] == {"person": "cy", "label": "a"}
    # labelled_by: cy's a is the label in force, but the pair exports with the majority's b, whose newest is bob
    assert [r.labelled_by for r in rows] == ["bob", "bob", None]


# agreement -------------------------------------------------------------------------------------------------


def test_reviewer_agreement_reports_pairwise_kappa_alpha_and_each_persons_agreement_with_the_judge(db):
    job, rounds = judged_round(db, n=6)  # the judge: a, b, a, b, a, b
    answers = {  # pair index → each person's answer
        0: {"ann": "a", "bob": "a", "cy": "a"},
        1: {"ann": "b", "bob": "a", "cy": "b"},
        2: {"ann": "a", "bob": "a"},
        3: {"ann": "tie", "bob": "tie", "cy": "b"},
        4: {"ann": "b"},
    }
    for i, by_person in answers.items():
        for person, answer in by_person.items():
            label(db, rounds[1][i], answer, person)
    got = actions.reviewer_agreement(db, "p")
    assert got["people"] == PEOPLE and got["shared"] == 4 and got["job_id"] is None
    pairwise = {(p["first"], p["second"]): p for p in got["pairwise"]}
    # ann-bob on 4 pairs: (a,a) (b,a) (a,a) (tie,tie) → 3/4. ann: a 2, b 1, tie 1; bob: a 3, tie 1
    # p_e = (2·3 + 1·0 + 1·1) / 16 = 7/16; κ = (3/4 − 7/16) / (1 − 7/16) = (5/16) / (9/16) = 5/9
    assert (pairwise["ann", "bob"]["n"], pairwise["ann", "bob"]["agree"]) == (4, 0.75)
    assert pairwise["ann", "bob"]["kappa"] == pytest.approx(5 / 9)
    # ann-cy on 3: (a,a) (b,b) (tie,b) → 2/3; ann a 1 b 1 tie 1, cy a 1 b 2: p_e = (1 + 2) / 9 = 1/3; κ = 1/2
    assert pairwise["ann", "cy"]["kappa"] == pytest.approx(0.5) and pairwise["ann", "cy"]["n"] == 3
    # α over the 4 shared pairs: units (a,a,a) (b,a,b) (a,a) (tie,tie,b); the coincidences give
    # o(a,a) = 3 + 0 + 2 = 5, o(b,b) = 1, o(a,b) = o(b,a) = 1, o(tie,tie) = 1, o(tie,b) = o(b,tie) = 1
    # n_a = 6, n_b = 3, n_tie = 2, n = 11; Σ_{c≠k} n_c·n_k = 2·(18 + 12 + 6) = 72; D = 4 off-diagonal
    # α = 1 − (n − 1)·4 / 72 = 1 − 40/72 = 4/9
    assert got["alpha"] == pytest.approx(4 / 9)
    # with the judge: ann decided a/b on 4 pairs (0, 1, 2, 4) and matches the judge on 0, 1, 2 → 3/4, one tie apart
    ann = got["with_judge"]["ann"]
    assert (ann["n"], ann["agree"], ann["ties"]) == (4, 0.75, 1)
    assert got["with_judge"]["bob"]["agree"] == pytest.approx(2 / 3)  # a, a, a against a, b, a; tie apart
    only_two = actions.reviewer_agreement(db, "p", job, 1)
    assert only_two["round"] == 1 and only_two["shared"] == 4
    with pytest.raises(ActionError, match="has no judged pairs in round 5"):
        actions.reviewer_agreement(db, "p", job, 5)
