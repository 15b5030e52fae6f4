"""benchmarks/inline.py's fork: a table row that starts from another run's π_0 (and its round-1 samples) must
start from exactly those, and then run its own stages."""

from __future__ import annotations

import pytest

from benchmarks.inline import Fork, run_inline, with_overrides
from engine.config import parse_config
from engine.runtime import checkpoints
from engine.runtime.run_folder import run_dir
from tests.test_jobs import run_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("fork_world"), size=WorldSize.mini(), progress=lambda *a: None)


def test_a_forked_row_starts_from_the_source_runs_pi0_and_samples(world, tmp_path):
    cfg = parse_config(run_config(world, tmp_path / "source", rounds=1, prompts_per_round=[16]))
    source = run_inline(cfg, tmp_path / "source.db")
    row_cfg = with_overrides(cfg, output_dir=str(tmp_path / "row"), judge__reference="none")
    row = run_inline(
        row_cfg,
        tmp_path / "row.db",
        fork=Fork(source.store, source.job_id, run_dir(cfg, source.store.path, source.job_id), sample_chunks=1),
    )

    pi0 = [checkpoints.saved_weights(d, 0, cfg) for d in (tmp_path / "source", tmp_path / "row")]
    assert checkpoints.file_hashes(pi0[0]) == checkpoints.file_hashes(pi0[1])
    assert {m.round for m in row.store.metrics(row.job_id) if m.name.startswith("eval/")} == {1}  # π_0 not re-run
    theirs = {(p.response_a, p.response_b, p.logp_policy_a) for p in source.store.pairs(source.job_id, 1)}
    ours = row.store.pairs(row.job_id, 1)
    assert theirs and {(p.response_a, p.response_b, p.logp_policy_a) for p in ours} == theirs
    # judged again by the row's own judge: no reference, r = β·logp(π_0)
    for p in ours:
        assert p.reward_a == pytest.approx(cfg.beta * p.logp_policy_a, abs=1e-5)
    assert (tmp_path / "row" / "round_1").is_dir() and row.store.job(row.job_id).status == "done"
