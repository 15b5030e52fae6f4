"""Storage: WAL and foreign keys, migrations from the first schema, all-or-nothing writes, the audit
trail, atomic job claims and the review queue's order."""

import json
import sqlite3

import pytest

from storage import Example, Job, Pair, ReviewFilter, Store, connect, migrate, schema_version
from storage.db import MIGRATIONS, SCHEMA_VERSION


def pair(job_id, project_id, example_id, confidence, noisy=None, label="a", source="self", round=1):
    return Pair(
        job_id=job_id,
        round=round,
        prompt=[{"role": "user", "content": f"q{example_id}"}],
        response_a="x",
        response_b="y",
        example_id=example_id,
        project_id=project_id,
        confidence=confidence,
        noisy=noisy,
        label=label,
        label_source=source,
        judge_label=label,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def seeded(store, n=3):
    p = store.ensure_project("p")
    exs = [Example(role="pool", prompt=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]
    store.add_examples(p.id, exs)
    job = store.enqueue(Job(project_id=p.id, kind="run"))
    return p, job, [e.id for e in store.examples(p.id, "pool")]


def test_pragmas_and_version(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert schema_version(store.db) == SCHEMA_VERSION
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("insert into configs (project_id, name, yaml) values (999, 'x', '')")


def test_migrates_a_database_made_by_the_first_version(tmp_path):
    path = tmp_path / "old.db"
    db = connect(path)
    migrate(db, target=1)
    assert schema_version(db) == 1
    assert "human_response" not in db["pairs"].columns_dict
    db["projects"].insert({"name": "old", "model": "m", "folder": "", "created_at": "2026-01-01"})
    db["jobs"].insert({"project_id": 1, "kind": "run", "status": "done", "created_at": "2026-01-01"})
    db["pairs"].insert(
        {
            "project_id": 1,
            "job_id": 1,
            "round": 1,
            "prompt": json.dumps([{"role": "user", "content": "q"}]),
            "response_a": "a",
            "response_b": "b",
            "label": "a",
            "label_source": "self",
            "confidence": 0.7,
        }
    )
    db.conn.close()
    store = Store(path)
    assert schema_version(store.db) == len(MIGRATIONS) == SCHEMA_VERSION
    assert store.project("old").model == "m"
    old_pair = store.pairs(1)[0]
    assert (old_pair.response_a, old_pair.label, old_pair.human_response) == ("a", "a", None)
    assert "warmup_flag" in store.db["pairs"].columns_dict and old_pair.warmup_flag is None
    store.set_label(old_pair.id, "b", human_response="better")
    assert store.pair(old_pair.id).human_response == "better"


def test_examples_deduplicate_and_import_is_all_or_nothing(store):
    p = store.ensure_project("p")
    ex = Example(role="seed", prompt=[{"role": "user", "content": "q"}], chosen="good", rejected="bad")
    assert store.add_examples(p.id, [ex, ex]) == (1, 1)
    assert store.add_examples(p.id, [ex]) == (0, 1)
    before = store.count_examples(p.id)
    broken = Example(role="seed", prompt=[{"role": "user", "content": "q2"}], chosen="c", rejected="r")
    with pytest.raises(Exception):
        with store.write():
            store.add_examples(p.id, [broken])
            raise RuntimeError("a later step of the same import failed")
    assert store.count_examples(p.id) == before


def test_pairs_are_not_duplicated_and_labels_are_audited(store):
    p, job, ids = seeded(store)
    assert store.add_pairs([pair(job, p.id, ids[0], 0.6)]) == 1
    assert store.add_pairs([pair(job, p.id, ids[0], 0.6), pair(job, p.id, ids[1], 0.9)]) == 1
    first = store.pairs(job)[0]
    store.set_label(first.id, "b", actor="alice")
    store.set_label(first.id, "tie", actor="bob")
    events = store.label_events(first.id)
    assert [(e.old_label, e.new_label, e.actor) for e in events] == [("a", "b", "alice"), ("b", "tie", "bob")]
    assert store.pair(first.id).label_source == "human"
    assert store.pair(first.id).noisy is False


def test_review_queue_puts_flagged_then_least_confident_first(store):
    p, job, ids = seeded(store, 5)
    confidences = [0.9, 0.55, 0.7, 0.99, 0.6]
    store.add_pairs([pair(job, p.id, ids[i], c, noisy=(i == 3)) for i, c in enumerate(confidences)])
    page, total = store.review_queue(ReviewFilter(project_id=p.id, limit=3))
    assert total == 5
    assert [x.confidence for x in page] == [0.99, 0.55, 0.6]
    page2, _ = store.review_queue(ReviewFilter(project_id=p.id, limit=3, offset=3))
    assert [x.confidence for x in page2] == [0.7, 0.9]
    only, n = store.review_queue(ReviewFilter(project_id=p.id, min_confidence=0.65, max_confidence=0.95))
    assert n == 2 and {x.confidence for x in only} == {0.7, 0.9}
    found, n = store.review_queue(ReviewFilter(project_id=p.id, search="q2"))
    assert n == 1 and found[0].prompt[0]["content"] == "q2"


def test_the_disagree_order_puts_pairs_the_no_reference_judge_labels_otherwise_first(store):
    p, job, ids = seeded(store, 4)
    # (confidence, the implicit judge's label, logp_policy_a, logp_policy_b): the no-reference judge picks the
    # answer π_{i-1} finds likelier, so it disagrees on the 2nd and the 4th pair
    rows = [(0.51, "a", -5.0, -9.0), (0.9, "a", -9.0, -5.0), (0.52, "b", -9.0, -5.0), (0.6, "b", -5.0, -9.0)]
    pairs = [pair(job, p.id, ids[i], c, label=lab) for i, (c, lab, _, _) in enumerate(rows)]
    for x, (_, _, la, lb) in zip(pairs, rows):
        x.logp_policy_a, x.logp_policy_b = la, lb
    store.add_pairs(pairs)
    page, total = store.review_queue(ReviewFilter(project_id=p.id, order="disagree"))
    assert total == 4 and [x.confidence for x in page] == [0.6, 0.9, 0.51, 0.52]


def test_bulk_accept_marks_confident_self_labels_accepted_not_human(store):
    p, job, ids = seeded(store, 3)
    store.add_pairs([pair(job, p.id, ids[i], c) for i, c in enumerate([0.95, 0.6, 0.97])])
    assert store.bulk_accept(p.id, 0.9) == 2
    sources = sorted((x.confidence, x.label_source) for x in store.pairs(job))
    assert sources == [(0.6, "self"), (0.95, "accepted"), (0.97, "accepted")]
    events = store.label_events()
    assert [(e.old_source, e.new_source, e.note) for e in events] == [("self", "accepted", "bulk accept")] * 2
    assert store.human_pairs(p.id) == []  # not replayed as gold in later rounds


def test_claims_are_exclusive_and_stale_jobs_are_interrupted(store, tmp_path):
    p, job, _ = seeded(store)
    second = store.enqueue(Job(project_id=p.id, kind="run"))
    other = Store(tmp_path / "s.db")
    a = store.claim_job("w1", 1)
    b = other.claim_job("w2", 2)
    assert {a.id, b.id} == {job, second}
    assert store.claim_job("w3", 3) is None
    store.update_job(a.id, heartbeat_at="2000-01-01T00:00:00+00:00")
    assert store.mark_stale_jobs(60) == [a.id]
    assert store.job(a.id).status == "interrupted"
    store.requeue(a.id)
    assert store.claim_job("w3", 3).id == a.id


def test_stages_and_review_approval(store):
    p, job, _ = seeded(store)
    store.stage_done(job, 1, "generate")
    store.stage_done(job, 1, "judge")
    store.stage_done(job, 1, "judge")
    assert store.round(job, 1).stages_done == ["generate", "judge"]
    store.update_job(job, status="paused")
    store.approve_review(job, 1)
    assert store.round(job, 1).stages_done[-1] == "review"
    assert store.job(job).status == "queued"


def test_a_metric_point_written_again_replaces_the_first(tmp_path):
    """A resumed stage writes its points again: (job, round, stage, name, step) keys one value, the latest."""
    from storage import Job, Metric

    store = Store(tmp_path / "m.db")
    job_id = store.enqueue(Job(project_id=store.ensure_project("p").id, kind="run"))
    first = [
        Metric(job_id=job_id, name="train/loss", value=value, step=step, round=1, stage="train")
        for step, value in ((1, 0.7), (2, 0.6), (3, 0.4))
    ]
    store.add_metrics(first)
    store.add_metrics(
        [
            Metric(job_id=job_id, name="train/loss", value=0.5, step=1, round=1, stage="train"),
            Metric(job_id=job_id, name="train/loss", value=0.9, step=1, round=2, stage="train"),
        ]
    )
    points = [(m.round, m.step, m.value) for m in store.metrics(job_id)]
    assert sorted(points) == [(1, 1, 0.5), (1, 2, 0.6), (1, 3, 0.4), (2, 1, 0.9)]


def test_the_metrics_migration_keeps_the_latest_of_duplicate_points(tmp_path):
    from storage.db import connect, migrate

    db = connect(tmp_path / "old.db")
    migrate(db, target=3)
    db["projects"].insert({"id": 1, "name": "p"})
    db["jobs"].insert({"id": 1, "project_id": 1, "kind": "run"})
    for value in (1.0, 2.0):  # a killed attempt's point, then the resumed attempt's
        db["metrics"].insert(
            {"job_id": 1, "round": 1, "stage": "train", "name": "train/loss", "step": 5, "value": value}
        )
    assert migrate(db) >= 4
    assert [r["value"] for r in db.query("select value from metrics")] == [2.0]


def test_an_unknown_id_raises_not_found_naming_it(tmp_path):
    from storage import NotFound

    store = Store(tmp_path / "n.db")
    for read, what in ((store.job, "job"), (store.pair, "pair"), (store.project_by_id, "project")):
        with pytest.raises(NotFound, match=f"^{what} 999 does not exist$"):
            read(999)
