"""The blind audit in storage: a round's sample written once (a resumed stage never duplicates it), labels marked
as given in the audit order, the first blind answer per pair read back for the estimate, and the review page's
audit order. Against a real SQLite file."""

from __future__ import annotations

import pytest

from engine.method.agreement import audit_estimate, audit_sample
from storage import Example, Job, Pair, ReviewFilter, Store, connect, migrate, schema_version
from storage.db import SCHEMA_VERSION
from storage.records import REVIEW_ORDERS


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "audit.db")
    yield s
    s.close()


def judged_rounds(store: Store, per_round: int = 6, rounds: int = 2) -> tuple[int, int, dict[int, list[int]]]:
    """A project with one run whose rounds each hold `per_round` judged pairs (judge label 'a' on even ids)."""
    project = store.ensure_project("p")
    store.add_examples(
        project.id, [Example(role="pool", prompt=[{"role": "user", "content": f"q{i}"}]) for i in range(per_round)]
    )
    examples = [e.id for e in store.examples(project.id, "pool")]
    job = store.enqueue(Job(project_id=project.id, kind="run"))
    for round_index in range(1, rounds + 1):
        store.add_pairs(
            [
                Pair(
                    job_id=job,
                    round=round_index,
                    prompt=[{"role": "user", "content": f"q{i}"}],
                    response_a="x",
                    response_b="y",
                    example_id=example,
                    project_id=project.id,
                    confidence=0.6,
                    margin=0.4,
                    label="a",
                    label_source="self",
                    judge_label="a",
                )
                for i, example in enumerate(examples)
            ]
        )
    by_round = {r: [p.id for p in store.pairs(job, r)] for r in range(1, rounds + 1)}
    for pair_id in by_round[1][1::2]:  # the judge said 'b' on every second pair of round 1
        store.update_pairs({pair_id: {"judge_label": "b", "label": "b"}})
    return project.id, job, by_round


def test_audit_is_a_review_order():
    assert "audit" in REVIEW_ORDERS


def test_a_database_of_the_previous_version_gains_the_audit_table_and_the_via_column(tmp_path):
    path = tmp_path / "v7.db"
    db = connect(path)
    migrate(db, target=7)
    assert "audit_pairs" not in db.table_names() and "via" not in db["label_events"].columns_dict
    db.conn.close()
    store = Store(path)
    assert schema_version(store.db) == SCHEMA_VERSION
    assert "audit_pairs" in store.db.table_names() and "via" in store.db["label_events"].columns_dict
    store.close()


def test_a_rounds_audit_sample_is_written_once_in_draw_order(store):
    _, job, by_round = judged_rounds(store)
    sample = audit_sample(by_round[1], 4, seed=3)
    assert store.audit_sample_ids(job, 1) == []
    assert store.set_audit_sample(job, 1, sample) == sample
    assert store.audit_sample_ids(job, 1) == sample
    # a resumed stage writes its sample again, or another one: the stored sample stays, nothing is duplicated
    assert store.set_audit_sample(job, 1, sample) == sample
    assert store.set_audit_sample(job, 1, by_round[1][:2]) == sample
    assert store.db["audit_pairs"].count == 4
    assert store.audit_sample_ids(job, 2) == []


def test_an_audit_sample_takes_only_its_own_rounds_pairs_each_once(store):
    _, job, by_round = judged_rounds(store)
    with pytest.raises(ValueError, match="not pairs of job"):
        store.set_audit_sample(job, 1, [by_round[1][0], by_round[2][0]])
    with pytest.raises(ValueError, match="each pair once"):
        store.set_audit_sample(job, 1, [by_round[1][0], by_round[1][0]])
    assert store.audit_sample_ids(job, 1) == []  # nothing half-written


def test_label_events_record_whether_the_label_was_given_in_the_audit_order(store):
    _, job, by_round = judged_rounds(store)
    audited, other = by_round[1][0], by_round[1][1]
    store.set_audit_sample(job, 1, [audited])
    assert store.set_label(audited, "b", via="audit").via == "audit"
    assert store.set_label(other, "a").via == "review"
    assert [e.via for e in store.label_events()] == ["audit", "review"]
    with pytest.raises(ValueError, match="in no audit sample"):
        store.set_label(other, "b", via="audit")
    with pytest.raises(ValueError, match="via must be one of"):
        store.set_label(audited, "b", via="elsewhere")
    assert store.pair(other).label == "a"  # the refused labels changed nothing


def test_audit_answers_are_each_pairs_first_blind_label_beside_the_judges(store):
    project, job, by_round = judged_rounds(store)
    first, second, third, fourth = by_round[1][:4]  # judge labels a, b, a, b
    store.set_audit_sample(job, 1, [third, first, second, fourth])
    store.set_label(first, "a", via="audit", actor="ann")
    store.set_label(first, "b", via="audit", actor="ann")  # a second look: the first blind answer counts
    store.set_label(second, "a", actor="ann")  # in the review queue, the judge's label in view: not an answer
    store.set_label(third, "b", via="audit", actor="ann")
    store.undo_last_label(project, "ann")  # a slip, undone: not an answer either
    store.set_label(third, "tie", via="audit", actor="ann")
    store.set_label(by_round[1][4], "a", actor="ann")  # not in the sample
    answers = store.audit_answers(job, 1)
    assert [(a.pair_id, a.person_label, a.judge_label) for a in answers] == [(third, "tie", "a"), (first, "a", "a")]
    assert answers[1].event_id == store.label_events(first)[0].id
    store.set_label(second, "b", via="audit", actor="bob")  # the person who audits later still answers blind
    estimate = audit_estimate(store.audit_answers(job, 1))
    # decided: first (a = a) and second (b = b); third is a tie; fourth not answered yet
    assert (estimate.agree, estimate.n, estimate.ties, estimate.both_bad) == (1.0, 2, 1, 0)
    assert store.audit_answers(job, 2) == []


def test_the_review_pages_audit_order_lists_only_the_rounds_audit_pairs_in_draw_order(store):
    project, job, by_round = judged_rounds(store, per_round=8)
    sample_1 = audit_sample(by_round[1], 5, seed=11)
    sample_2 = audit_sample(by_round[2], 3, seed=12)
    store.set_audit_sample(job, 1, sample_1)
    store.set_audit_sample(job, 2, sample_2)
    audit = ReviewFilter(project_id=project, job_id=job, round=1, order="audit")
    page, total = store.review_page(audit)
    assert total == 5 and [p.id for p in page] == sample_1
    assert [p.id for p in store.review_queue(audit)[0]] == sample_1
    # a deep page is read from the other end: the same ids
    deep, _ = store.review_page(
        ReviewFilter(project_id=project, job_id=job, round=1, order="audit", limit=2, offset=3)
    )
    assert [p.id for p in deep] == sample_1[3:]
    # without a round: every audited round, the latest first
    every, total = store.review_page(ReviewFilter(project_id=project, order="audit"))
    assert total == 8 and [p.id for p in every] == sample_2 + sample_1
