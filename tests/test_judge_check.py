"""`launch.py judge-check` and the `judge-check` job (engine.runtime.judge_check): each judge variant's agreement
with the person's own labelled pairs, by cross-fitting seed DPO on a mini demo world with ten labelled pairs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.harness import mini_world, run_config
from engine.config import parse_config
from engine.method.agreement import wilson_interval
from engine.method.judge_variants import VARIANT_NAMES
from engine.runtime import judge_check
from storage import Job, Pair, Store

ROOT = Path(__file__).resolve().parents[1]
FAST = {"rounds": 0, "epochs": 1, "batch_size": 4, "train": {"micro_batch_size": 4}}  # two DPO steps per fold


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return mini_world(tmp_path_factory.mktemp("judge_check_world"))


def labels_file(world, path: Path, n: int | None = None) -> Path:
    """The mini world's seed and eval pairs (ten) as one seed file, or the first n of them."""
    lines = (world.seed_file.read_text() + world.eval_file.read_text()).splitlines()[:n]
    path.write_text("\n".join(lines) + "\n")
    return path


def config_file(world, tmp: Path, seed_data: Path | None, **over) -> Path:
    text = run_config(world, tmp / "out", **FAST, **over)
    data = yaml.safe_load(text)
    data["seed_data"] = str(seed_data) if seed_data else ""
    path = tmp / "judge_check.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def judge_check_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", "judge-check", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_json_has_one_wilson_figure_per_variant_over_every_labelled_pair(world, tmp_path):
    cfg = config_file(world, tmp_path, labels_file(world, tmp_path / "labels.jsonl"))
    done = judge_check_cli(cfg, "--db", tmp_path / "none.db", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout holds the JSON alone
    assert set(result) == {"judges", "chosen", "minutes"} and list(result["judges"]) == list(VARIANT_NAMES)
    for figures in result["judges"].values():
        assert set(figures) == {"agree", "lo", "hi", "n"} and figures["n"] == 10
        matches = round(figures["agree"] * 10)
        assert figures["agree"] == pytest.approx(matches / 10)
        assert (figures["lo"], figures["hi"]) == pytest.approx(wilson_interval(matches, 10))
    best = max(f["lo"] for f in result["judges"].values())
    assert result["judges"][result["chosen"]]["lo"] == best and result["minutes"] > 0
    assert not (tmp_path / "none.db").exists()  # a missing database is not created


def test_one_fold_agrees_with_seed_dpo_and_judging_done_by_hand(world, tmp_path):
    """Fold 0 redone with the trainer, the scorer and the variants directly: the same choices, and the figures
    are the pooled counts of the folds."""
    import torch

    from engine.method import scoring
    from engine.method.judge_variants import PairScores, VariantParams, fit_length_alpha, variant_choices
    from engine.method.trainer import TrainRow, TrainSettings, train_dpo
    from engine.runtime.checkpoints import load_policy

    cfg = parse_config(config_file(world, tmp_path, labels_file(world, tmp_path / "labels.jsonl")).read_text())
    pairs = judge_check.labelled_pairs(None, None, cfg)
    result = judge_check.cross_fit(cfg, pairs, judge_check.fold_count(len(pairs)))
    assert len(result.folds) == 5 and sorted(i for f in result.folds for i in f.held) == list(range(10))

    # fold 0 by hand: seed DPO on the other folds from π_init, then the four log-probs of every pair
    fold = judge_check.fold_of(len(pairs), 5, cfg.seed)
    shown = judge_check.chosen_first(len(pairs), cfg.seed)
    train = [i for i in range(10) if fold[i] != 0]
    held = [i for i in range(10) if fold[i] == 0]
    assert held == result.folds[0].held
    policy = load_policy(cfg, cfg.model, tmp_path, None, trainable=True)
    args = ([p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs])
    with policy.init_view() as init:
        init_chosen, init_rejected = scoring.pair_logps(init, policy.tokenizer, *args)
    rows = [
        TrainRow(None, pairs[i].prompt, pairs[i].chosen, pairs[i].rejected, init_chosen[i], init_rejected[i], True)
        for i in train
    ]
    train_dpo(policy.model, policy.tokenizer, rows, TrainSettings.for_round(cfg, 0), None, "adapters_disabled")
    policy.model.eval()
    policy_chosen, policy_rejected = scoring.pair_logps(policy.model, policy.tokenizer, *args)
    tokens_chosen = scoring.response_token_counts(policy.tokenizer, args[1])
    tokens_rejected = scoring.response_token_counts(policy.tokenizer, args[2])

    def scores(indices):
        a = [
            (policy_chosen, init_chosen, tokens_chosen)
            if shown[i]
            else (policy_rejected, init_rejected, tokens_rejected)
            for i in indices
        ]
        b = [
            (policy_rejected, init_rejected, tokens_rejected)
            if shown[i]
            else (policy_chosen, init_chosen, tokens_chosen)
            for i in indices
        ]
        column = lambda sides, k: [side[k][i] for side, i in zip(sides, indices)]  # noqa: E731
        return PairScores.of(column(a, 0), column(b, 0), column(a, 1), column(b, 1), column(a, 2), column(b, 2))

    alpha = fit_length_alpha(scores(train), cfg.beta).alpha
    by_hand = variant_choices(scores(held), VariantParams(cfg.beta, alpha))
    assert result.folds[0].length_alpha == pytest.approx(alpha)
    for name in VARIANT_NAMES:
        assert torch.equal(by_hand[name].a_preferred, result.folds[0].choices[name].a_preferred), name
        agree_by_hand = sum(a == s for a, s in zip(by_hand[name].a_preferred.tolist(), [shown[i] for i in held]))
        folds_agree = [
            sum(a == s for a, s in zip(f.choices[name].a_preferred.tolist(), f.chosen_first)) for f in result.folds
        ]
        assert folds_agree[0] == agree_by_hand
        assert result.judges[name].agree == pytest.approx(sum(folds_agree) / 10) and result.judges[name].n == 10
        assert (result.judges[name].lo, result.judges[name].hi) == pytest.approx(wilson_interval(sum(folds_agree), 10))


def test_labelled_pairs_are_the_seed_the_config_and_a_persons_run_labels_each_once(world, tmp_path):
    store = Store(tmp_path / "labels.db")
    project = store.ensure_project("labels")
    seed = labels_file(world, tmp_path / "seed.jsonl", n=3)
    from engine.data.importers import load_examples

    store.add_examples(project.id, load_examples(seed, "seed").examples[:2])  # two imported, the third not yet
    job_id = store.enqueue(Job(project_id=project.id, kind="run"))
    prompt = [{"role": "user", "content": "max: 1 2"}]
    store.add_pairs(
        [
            Pair(job_id, 1, prompt, "1", "2", project_id=project.id, label="a", label_source="self"),
            Pair(job_id, 1, prompt, "2", "x", project_id=project.id, label="a", label_source="self"),
            Pair(job_id, 1, prompt, "3", "y", project_id=project.id, label="a", label_source="self"),
        ]
    )
    first, second, third = store.pairs(job_id)
    store.set_label(first.id, "b")  # a person prefers "2"
    store.set_label(second.id, "tie")  # not a preference: left out
    cfg = parse_config(yaml.safe_dump({"model": str(world.model_dir), "seed_data": str(seed)}))
    pairs = judge_check.labelled_pairs(store, project.id, cfg)
    assert [(p.source, p.chosen, p.rejected) for p in pairs[3:]] == [("human", "2", "1")]
    assert len(pairs) == 4 and [p.source for p in pairs[:3]] == ["seed"] * 3  # the imported two are not read twice


@pytest.mark.parametrize(
    "pairs, extra, message",
    [
        (None, (), "the project has no labelled pairs"),
        (3, (), "3 labelled pairs: cross-fitting 2 folds needs at least 4 (two per fold)"),
        (10, ("--folds", "6"), "10 labelled pairs: cross-fitting 6 folds needs at least 12 (two per fold)"),
    ],
)
def test_too_few_labelled_pairs_exit_2_with_the_reason_and_write_nothing(world, tmp_path, pairs, extra, message):
    db = tmp_path / "studio.db"
    store = Store(db)
    store.ensure_project("bench")  # the harness config's project, with no pairs of its own
    store.close()
    before = sha256(db)
    seed = labels_file(world, tmp_path / "labels.jsonl", n=pairs) if pairs else None
    done = judge_check_cli(config_file(world, tmp_path, seed), "--db", db, "--json", *extra)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
    assert sha256(db) == before and not (tmp_path / "out").exists()


def test_the_studio_queues_the_check_its_worker_runs_it_and_the_api_reads_the_result(world, tmp_path):
    from gradio_client import Client

    from tests.test_studio_api import start_studio, stop_studio

    studio = start_studio(tmp_path / "studio.db")  # with its worker
    try:
        client = Client(studio.url, verbose=False)
        labels = labels_file(world, tmp_path / "labels.jsonl")
        assert client.predict(str(labels), "checked", "seed", api_name="/import_file")["ok"]
        cfg_text = config_file(world, tmp_path, None).read_text()  # no seed_data: the imported pairs are the labels
        assert client.predict("checked", api_name="/judge_check_result") is None
        job_id = client.predict("checked", cfg_text, api_name="/judge_check")["job_id"]
        deadline = time.monotonic() + 400
        while (result := client.predict("checked", api_name="/judge_check_result"))["status"] not in (
            "done",
            "failed",
        ):
            assert time.monotonic() < deadline, result
            time.sleep(2)
    finally:
        stop_studio(studio)
    assert result["status"] == "done" and result["job_id"] == job_id, result["error"]
    assert list(result["judges"]) == list(VARIANT_NAMES) and result["progress"] == 1.0
    store = Store(tmp_path / "studio.db")
    stored = {m.name: m.value for m in store.metrics(job_id)}
    for name, figures in result["judges"].items():
        assert figures["n"] == 10
        for key in ("agree", "lo", "hi", "n"):
            assert stored[f"judge_check/{name}/{key}"] == pytest.approx(figures[key])
    assert result["chosen"] == judge_check.choose(
        {name: judge_check.JudgeEstimate(**f) for name, f in result["judges"].items()}
    )


def test_folds_and_epochs_keep_two_pairs_a_fold_and_one_seed_rounds_training():
    assert [judge_check.fold_count(n) for n in (4, 9, 10, 20, 64)] == [2, 4, 5, 5, 5]
    # the text world (E = 3, 5 folds): one epoch a fold; the demo world (E = 12): three
    assert (judge_check.fold_epochs(3, 5), judge_check.fold_epochs(12, 5), judge_check.fold_epochs(0, 2)) == (1, 3, 1)
    with pytest.raises(judge_check.NotEnoughLabels, match="cross-fitting 2 folds needs at least 4"):
        judge_check.fold_count(3)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        judge_check.JudgeCheckRequest("p", epochs=0)


def test_the_plan_keeps_the_faithful_folds_when_they_fit_and_else_gives_pi0_the_most_training_that_fits():
    """Hand-priced on the text world's shape: 20 pairs, a scoring pass of 30 s (1.5 s a pair), loading 3 s, E = 3;
    a training pair-pass is STEP_FACTOR = 4 pair scorings, 6 s."""
    from engine.runtime import judge_folds as jf

    assert jf.STEP_FACTOR == 4.0
    costs = jf.MeasuredCosts(load_s=3.0, pass_s=30.0, n_pairs=20)
    # trained pair-passes × 6 s + a π_0 pass per fold + a load for every fold after the first
    assert jf.predicted_seconds(costs, 5, 1) == 80 * 6 + 5 * 30 + 4 * 3 == 642
    assert jf.predicted_seconds(costs, 3, 1) == (13 + 13 + 14) * 6 + 3 * 30 + 2 * 3 == 336
    assert jf.predicted_seconds(costs, 2, 3) == 60 * 6 + 2 * 30 + 3 == 423

    def plan(budget, **fixed):
        p = jf.plan_folds(costs, 3, budget, **fixed)
        return p.folds, p.epochs

    assert plan(700) == (5, 1)  # the faithful plan fits
    assert plan(450) == (2, 3)  # 30 pair-passes a fold (3 folds of 1 epoch: 13.3; of 2 epochs: 576 s)
    assert plan(400) == (2, 2)  # 20 pair-passes a fold, 303 s
    assert plan(100) == (2, 1)  # nothing fits: the cheapest, said so
    assert "over the budget" in jf.plan_folds(costs, 3, 100).why
    assert plan(100, folds=5) == (5, 1) and plan(450, epochs=3) == (2, 3)  # given folds or epochs are kept
    # the demo world's 64 pairs of a toy model: the faithful 5 folds of 12 / 4 epochs
    assert jf.plan_folds(jf.MeasuredCosts(0.5, 0.5, 64), 12, 480).folds == 5
    assert jf.plan_folds(jf.MeasuredCosts(0.5, 0.5, 64), 12, 480).epochs == 3


def test_a_tight_budget_cross_fits_fewer_folds_and_still_judges_every_pair(world, tmp_path):
    cfg = parse_config(config_file(world, tmp_path, labels_file(world, tmp_path / "labels.jsonl")).read_text())
    pairs = judge_check.labelled_pairs(None, None, cfg)
    said: list[str] = []
    result = judge_check.cross_fit(cfg, pairs, None, say=said.append, budget_s=0.001)
    assert (result.plan.folds, result.plan.epochs) == (2, 1) and len(result.folds) == 2
    assert sorted(i for f in result.folds for i in f.held) == list(range(10))
    assert all(e.n == 10 for e in result.judges.values())
    assert said[0].startswith("2 folds of 1 epoch (the cheapest: predicted")
