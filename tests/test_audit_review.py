"""The blind audit as the studio's actions serve it: the audit order hides the judge's label until the person has
answered, its labels are audit answers, the estimate counts only them, and the Run tab warns while the interval
includes 0.5. Plain functions of a real SQLite file, no server."""

from __future__ import annotations

import pytest

from app import actions
from app.actions import ActionError, ReviewQuery
from app.actions.review import JUDGE_FIELDS
from app.run_tab import audit_warning_md
from engine.data.report import audit_estimates, audit_warning, round_table
from storage import Store
from tests.test_audit import judged_rounds

AUDIT = ReviewQuery(round=1, order="audit")


@pytest.fixture
def audited(tmp_path):
    """A project 'p' whose run has two judged rounds of 6 pairs; round 1's audit sample is its first four pairs
    (judge labels a, b, a, b)."""
    db = str(tmp_path / "audit.db")
    store = Store(db)
    _, job, by_round = judged_rounds(store)
    sample = by_round[1][:4]
    store.set_audit_sample(job, 1, sample)
    store.close()
    return db, job, sample


def test_the_audit_order_shows_unanswered_audit_pairs_without_the_judges_label(audited):
    db, _, sample = audited
    page = actions.review_page(db, "p", AUDIT)
    assert page.pair_ids == sample and page.blind == sorted(sample)
    for row in page.rows:
        assert row[2:8] == ["", "", "", "", "blind", ""]  # flag, confidence, margin, rank, label, source
    view = actions.open_review(db, "p", AUDIT)
    assert view.pair["blind"] is True and view.pair["events"] == [] and view.pair["rank"] is None
    assert all(view.pair[name] is None for name in JUDGE_FIELDS)
    assert view.pair["response_a"] == "x"  # the answers themselves are shown
    detail = actions.pair_detail(db, sample[0], order="audit")
    assert detail["blind"] and detail["judge_label"] is None and detail["confidence"] is None
    # the same pair in any other order shows everything
    assert actions.pair_detail(db, sample[0])["judge_label"] == "a"
    assert actions.review_page(db, "p", ReviewQuery(round=1)).blind == []
    assert actions.open_review(db, "p", ReviewQuery(round=1), focus=sample[0]).pair["confidence"] == 0.6


def test_an_answer_in_the_audit_order_is_an_audit_label_and_reveals_the_judge(audited):
    db, job, sample = audited
    view = actions.open_review(db, "p", AUDIT)
    with pytest.raises(ActionError, match="blind audit"):
        actions.label_in_review(db, view.cursor, "keep")  # keep and flip act on a label nobody has seen
    answered = actions.label_in_review(db, view.cursor, "b")
    assert answered.event.via == "audit" and answered.revealed == "a"
    assert answered.cursor.index == 1 and answered.pair["blind"]  # the next pair is still blind
    assert answered.rows[0][6] == "b" and answered.rows[0][3] == "0.600"  # the answered pair shows its numbers
    assert actions.review_page(db, "p", AUDIT).blind == sorted(sample[1:])
    again = actions.label_in_review(db, actions.open_review(db, "p", AUDIT).cursor, "flip")  # no longer blind
    assert again.event.via == "audit" and again.revealed is None
    store = Store(db)
    assert [(a.pair_id, a.person_label) for a in store.audit_answers(job, 1)] == [(sample[0], "b")]
    store.close()


def test_the_estimate_counts_audit_answers_only(audited):
    db, job, sample = audited
    actions.set_label(db, sample[0], "a", via="audit")  # judge a: agrees
    actions.set_label(db, sample[1], "a", via="audit")  # judge b: disagrees
    actions.set_label(db, sample[2], "tie", via="audit")
    actions.set_label(db, sample[3], "b")  # the review queue, the judge's label in view: not an answer
    with pytest.raises(ActionError, match="no audit sample"):
        actions.set_label(db, sample[-1] + 1, "a", via="audit")
    estimate = actions.audit_estimate(db, "p", round_index=1)
    assert estimate["job_id"] == job
    [row] = estimate["rounds"]
    assert (row["agree"], row["n"], row["ties"], row["both_bad"], row["answered"], row["sample"]) == (
        0.5,
        2,
        1,
        0,
        3,
        4,
    )
    assert row["covers_half"] and row["lo"] < 0.5 < row["hi"]
    assert actions.audit_estimate(db, job_id=job)["rounds"] == [row]
    with pytest.raises(ActionError, match="round 2 .* has no audit sample"):
        actions.audit_estimate(db, "p", round_index=2)


def test_the_warning_names_the_coin_and_what_to_do_while_the_interval_includes_half(audited):
    db, job, sample = audited
    store = Store(db)
    assert "no decided answer yet (0 of 4)" in audit_warning(audit_estimates(store, job))
    for pair_id in sample:
        store.set_label(pair_id, store.pair(pair_id).judge_label, via="audit")  # 4 of 4 agree: 0.51-1.0
    estimates = audit_estimates(store, job)
    assert not estimates[1].estimate.covers_half and audit_warning(estimates) == ""
    table = round_table(store, job)
    assert "audit agree [95%]" in table and "| 1.000 [0.510, 1.000] | 4 (0, 0) of 4 |" in table
    store.close()
    assert audit_warning_md(db, job) == ""


def test_the_run_tab_warns_when_the_audit_cannot_tell_the_judge_from_a_coin(audited):
    db, job, sample = audited
    for pair_id, answer in zip(sample, "abba"):  # judge a, b, a, b: two of four agree
        actions.set_label(db, pair_id, answer, via="audit")
    text = audit_warning_md(db, job)
    assert text.startswith("⚠ **The self-judge is not yet better than a coin on your labels:**")
    assert "agreed with you on 0.50 of 4 decided pairs, 95% interval 0.15–0.85, which includes 0.5" in text
    for advice in ("Label more audit pairs", "judge.kind", "judge.reference: none", "judge-check"):
        assert advice in text
    assert actions.audit_estimate(db, "p")["warning"].split(": ", 1)[1] in text
