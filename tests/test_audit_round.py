"""The blind audit in a real round on the mini demo world: the judge stage draws and stores a uniform sample of the
configured size (the same one when the stage runs again), the simulated reviewer answers it by gold in the audit
order, the estimate sits beside the true accuracy, and the round table a run prints shows it. Plus
benchmarks/audit_coverage.py end to end on a tiny case."""

from __future__ import annotations

import json

import pytest

from benchmarks.audit_coverage import audit_reviewer, audit_vs_truth, main, resampled_coverage, true_accuracy
from benchmarks.inline import gold_answer, run_inline
from engine.config import parse_config
from engine.data.report import round_table
from engine.method.agreement import audit_sample
from engine.runtime.context import StageContext
from engine.runtime.round_data import audit_seed, draw_audit
from storage import Store
from tests.test_audit import judged_rounds
from tests.test_jobs import run_config

AUDIT_SIZE = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("audit_world"), size=WorldSize.mini(), progress=lambda *a: None)


@pytest.fixture(scope="module")
def audited_run(world, tmp_path_factory):
    """One round of 16 prompts on the mini world (gold stored beside each pair after generating), whose reviewer
    answers the audit by gold."""
    tmp = tmp_path_factory.mktemp("audit_run")
    cfg = parse_config(run_config(world, tmp / "out", rounds=1, prompts_per_round=[16], audit_size=AUDIT_SIZE))
    run = run_inline(cfg, tmp / "audit.db", audit_reviewer(1, gold=True))
    yield cfg, run
    run.store.close()


def test_the_judge_stage_stores_a_uniform_sample_of_the_configured_size(audited_run):
    cfg, run = audited_run
    judged = [p.id for p in run.store.pairs(run.job_id, 1) if p.judge_label in ("a", "b")]
    sample = run.store.audit_sample_ids(run.job_id, 1)
    assert len(judged) > AUDIT_SIZE and len(sample) == AUDIT_SIZE
    assert sample == audit_sample(judged, AUDIT_SIZE, audit_seed(cfg.seed, 1))
    # a resumed stage draws again: the stored sample stays, nothing is added
    draw_audit(StageContext(run.store, run.job_id, run.project_id, cfg, 1, "judge"))
    assert run.store.audit_sample_ids(run.job_id, 1) == sample
    assert run.store.audit_rounds(run.job_id) == [(1, AUDIT_SIZE)]


def test_the_simulated_reviewer_answers_the_audit_by_gold_and_the_estimate_sits_beside_the_truth(audited_run):
    cfg, run = audited_run
    events = [e for e in run.store.label_events() if e.via == "audit"]
    assert sorted(e.pair_id for e in events) == sorted(run.store.audit_sample_ids(run.job_id, 1))
    check = audit_vs_truth(run.store, run.job_id, 1)
    assert check.n + check.ties + check.both_bad == AUDIT_SIZE and check.both_bad == 0
    pairs = run.store.pairs(run.job_id, 1)
    assert check.true_accuracy == true_accuracy(pairs) == pytest.approx(run.metric("round/self_label_accuracy", 1))
    assert check.decided >= check.n
    assert check.covered == (None if check.n == 0 else check.lo <= check.true_accuracy <= check.hi)
    by_id = {p.id: p for p in pairs}
    assert all(e.new_label == gold_answer(by_id[e.pair_id]) for e in events)
    assert "| audit agree [95%] | audit n (tie, both bad) |" in round_table(run.store, run.job_id)


def test_the_estimate_and_the_truth_by_hand(tmp_path):
    store = Store(tmp_path / "hand.db")
    _, job, by_round = judged_rounds(store, per_round=6, rounds=1)  # judge labels a, b, a, b, a, b
    ids = by_round[1]
    golds = [(1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]  # gold: a a b b tie a
    store.update_pairs({i: {"gold_a": ga, "gold_b": gb} for i, (ga, gb) in zip(ids, golds)})
    # the judge is right on pairs 0 and 3 of the five gold decides: 0.4
    assert true_accuracy(store.pairs(job, 1)) == 0.4
    store.set_audit_sample(job, 1, ids[:5])
    for pair_id, answer in zip(ids[:5], ["a", "a", "b", "b", "tie"]):
        store.set_label(pair_id, answer, via="audit")
    check = audit_vs_truth(store, job, 1)
    assert (check.agree, check.n, check.ties, check.true_accuracy, check.decided) == (0.5, 4, 1, 0.4, 5)
    assert check.covered and check.lo < 0.4 < check.hi
    covered, intervals = resampled_coverage(store.pairs(job, 1), 6, draws=3, seed=0)
    assert (covered, intervals) == (3, 3)  # every draw is the whole round: 2 of 5 agree, interval covers 0.4
    store.close()


def test_the_coverage_script_reports_both_coverages_on_a_tiny_case(tmp_path):
    out = tmp_path / "coverage.md"
    assert (
        main(
            [
                "--world",
                "mini",
                "--runs",
                "1",
                "--audit-size",
                "6",
                "--draws",
                "4",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert text.startswith("# The blind audit's 95% interval") and "python benchmarks/audit_coverage.py" in text
    checks = json.loads(out.with_suffix(".json").read_text())
    assert [c["round"] for c in checks] == [1, 2]
    assert all(c["n"] + c["ties"] == 6 and 0 <= c["resampled"] <= 4 for c in checks)
    assert "**The stage's own samples:**" in text and "**Fresh samples of the same rounds** (4 per round)" in text


def test_the_coverage_script_reads_finished_runs(audited_run, tmp_path):
    """--from-runs: a kept run's rounds, read from its database (as for the text world's kept rows), no run made."""
    cfg, run = audited_run
    out = tmp_path / "kept.md"
    assert main(["--from-runs", str(run.store.path), "--draws", "3", "--out", str(out)]) == 0
    (check,) = json.loads(out.with_suffix(".json").read_text())
    truth = audit_vs_truth(run.store, run.job_id, 1, cfg.seed)
    assert (check["run_seed"], check["n"], check["true_accuracy"]) == (cfg.seed, truth.n, truth.true_accuracy)
    fresh = resampled_coverage(run.store.pairs(run.job_id, 1), cfg.audit_size, 3, cfg.seed)
    assert (check["resampled_covered"], check["resampled"]) == fresh
    assert "1 runs on the given world (kept runs)" in out.read_text()
