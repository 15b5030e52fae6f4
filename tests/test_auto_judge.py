"""`judge.kind: auto` (engine.runtime.auto_judge) and the two training-set controls (engine.runtime.round_data):
the configuration keys and their checks, the choice from hand-made judge-check and audit figures, a round
relabelled from its stored numbers, training_rows on a hand-built set, and a real run on the mini demo world that
checks its judge, chooses, relabels, reuses a stored check and switches to the audit once it has answers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from engine.config import ConfigError, parse_config
from engine.method.agreement import agreement, wilson_interval
from engine.method.judge_variants import VARIANT_NAMES, PairScores, VariantParams, variant_choices, variant_scores
from engine.runtime import auto_judge, judge_check
from engine.runtime.auto_judge import AuditedRound, AutoChoice, audit_figures, choices_from_metrics, decide
from engine.runtime.context import StageContext
from engine.runtime.jobs import StageRef, plan
from engine.runtime.round_data import keep_top_by_margin, replay_sample, training_rows
from storage import Example, Job, Metric, Pair, Store

# --- configuration --------------------------------------------------------------------------------------------


def test_auto_and_the_two_keys_are_configuration_with_checked_ranges():
    cfg = parse_config("model: m\njudge:\n  kind: auto\n")
    assert cfg.judge.kind == "auto"
    assert (cfg.train.keep_top_fraction, cfg.train.replay_labelled) == (1.0, 0.0)  # today's behaviour
    with pytest.raises(ConfigError, match=r"r.yaml:3: key 'judge.kind' must be one of implicit, auto, density_ratio"):
        parse_config("model: m\njudge:\n  kind: automatic\n", "r.yaml")
    for key, value, what in (
        ("keep_top_fraction", 0, r"in \(0, 1\], got 0$"),
        ("keep_top_fraction", 1.5, r"in \(0, 1\], got 1.5"),
        ("replay_labelled", -0.1, "from 0 to 10, got -0.1"),
        ("replay_labelled", 11, "from 0 to 10, got 11$"),
    ):
        with pytest.raises(ConfigError, match=rf"r.yaml:3: key 'train.{key}' must be {what}"):
            parse_config(f"model: m\ntrain:\n  {key}: {value}\n", "r.yaml")
    cfg = parse_config("model: m\n", "r.yaml", ["train.keep_top_fraction=0.5", "train.replay_labelled=0.25"])
    assert (cfg.train.keep_top_fraction, cfg.train.replay_labelled) == (0.5, 0.25)


def test_only_an_auto_run_has_a_judge_check_stage_before_its_seed_round():
    auto = plan(parse_config("model: m\nrounds: 1\njudge:\n  kind: auto\n"))
    assert auto[:4] == [
        StageRef(0, "prepare"),
        StageRef(0, "judge-check"),
        StageRef(0, "seed"),
        StageRef(0, "evaluate"),
    ]
    implicit = plan(parse_config("model: m\nrounds: 1\n"))
    assert [ref.stage for ref in implicit] == [
        "prepare",
        "seed",
        "evaluate",
        "generate",
        "judge",
        "train",
        "evaluate",
        "finalize",
    ]
    assert [ref for ref in auto if ref.stage != "judge-check"] == implicit


# --- the choice -------------------------------------------------------------------------------------------------


def figures(**counts: tuple[int, int]) -> dict:
    """name=(matches, n) → AgreementEstimate, in the order given."""
    return {name: agreement(["a"] * n, ["a"] * k + ["b"] * (n - k)) for name, (k, n) in counts.items()}


def test_the_best_lower_bound_wins_not_the_best_point_estimate():
    check = figures(implicit=(13, 20), no_reference=(9, 10), init_per_token=(17, 20))
    # 9/10 = 0.90 has the highest point estimate, but 17/20 = 0.85 has the higher Wilson lower bound
    lo_17_of_20, lo_9_of_10 = wilson_interval(17, 20)[0], wilson_interval(9, 10)[0]
    assert (lo_17_of_20, lo_9_of_10) == pytest.approx((0.6396, 0.5958), abs=1e-4)
    choice = decide(check, None)
    assert (choice.variant, choice.basis, choice.n) == ("init_per_token", "judge_check", 20)
    assert decide(figures(implicit=(7, 10), ensemble=(7, 10)), None).variant == "implicit"  # a tie: the first


def test_the_audit_decides_once_it_has_ten_decided_answers():
    check = figures(implicit=(13, 20), no_reference=(16, 20))
    few = figures(implicit=(9, 9), no_reference=(3, 9))
    assert decide(check, few).basis == "judge_check" and decide(check, few).variant == "no_reference"
    enough = figures(implicit=(10, 10), no_reference=(3, 10))
    choice = decide(check, enough)
    assert (choice.variant, choice.basis, choice.n) == ("implicit", "audit", 10)
    assert choice.figures["no_reference"].agree == 0.3
    assert decide(check, enough, min_audit=11).basis == "judge_check"
    with pytest.raises(ValueError, match="no judge-check figures"):
        decide(None, few)


def hand_scores() -> PairScores:
    """Four pairs, β = 0.1, with tokens 2 | 1, 1 | 1, 4 | 1, 1 | 1. By hand: implicit r = β(policy − init) picks
    a, a (−0.1 vs −0.2), a (0.5 vs 0.2), b (−0.2 vs −0.05), pair 0 a tie (0.1 each: a); no_reference β·policy
    picks a, a, b, b; init_per_token init/tokens picks a (−1 vs −3), a (a tie), a (−2 vs −3), b (−2 vs −0.5)."""
    return PairScores.of(
        logp_policy_a=[-1.0, -2.0, -3.0, -4.0],
        logp_policy_b=[-2.0, -3.0, -1.0, -1.0],
        logp_init_a=[-2.0, -1.0, -8.0, -2.0],
        logp_init_b=[-3.0, -1.0, -3.0, -0.5],
        tokens_a=[2.0, 1.0, 4.0, 1.0],
        tokens_b=[1.0, 1.0, 1.0, 1.0],
    )


def test_audit_figures_judge_each_audited_pair_from_its_stored_numbers():
    scores = hand_scores()
    # implicit: r_a − r_b = 0.1·[(−1+2) − (−2+3)] = 0 → a (a tie goes to a); pair 2: 0.1·[5 − 2] > 0 → a;
    # pair 3: 0.1·[−2 − (−0.5)] < 0 → b. no_reference: pair 0 a, pair 2 b, pair 3 b.
    # init_per_token: pair 0 −1 vs −3 → a; pair 2 −2 vs −3 → a; pair 3 −2 vs −0.5 → b
    choices = variant_choices(scores.take([0, 2, 3]))
    assert [bool(x) for x in choices["implicit"].a_preferred] == [True, True, False]
    assert [bool(x) for x in choices["no_reference"].a_preferred] == [True, False, False]
    assert [bool(x) for x in choices["init_per_token"].a_preferred] == [True, True, False]
    # the person answered a, b, tie: the tie is counted apart, n = 2
    got = audit_figures([AuditedRound(scores, [0, 2, 3], ["a", "b", "tie"])], beta=0.1)
    assert list(got) == list(VARIANT_NAMES)
    assert (got["implicit"].agree, got["implicit"].n, got["implicit"].ties) == (0.5, 2, 1)
    assert (got["no_reference"].agree, got["init_per_token"].agree) == (1.0, 0.5)
    assert audit_figures([AuditedRound(scores, [], [])], beta=0.1) is None


def test_the_ensemble_scores_each_answer_by_its_share_of_votes():
    scores = hand_scores()
    judged = variant_scores(scores, "ensemble")
    votes = variant_choices(scores)
    share_a = sum(votes[n].a_preferred.double() for n in VARIANT_NAMES[:-1]) / 5
    assert torch.allclose(judged.score_a, share_a) and torch.allclose(
        judged.score_a + judged.score_b, torch.ones(4, dtype=torch.float64)
    )
    assert torch.equal(judged.choice.a_preferred, votes["ensemble"].a_preferred)
    no_ref = variant_scores(scores, "no_reference", VariantParams(beta=0.1))
    assert torch.allclose(no_ref.score_a, torch.tensor([-0.1, -0.2, -0.3, -0.4], dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown judge variant 'oracle'"):
        variant_scores(scores, "oracle")


def test_a_choice_round_trips_through_metrics_the_round_table_and_the_dataset_card(tmp_path):
    from engine.data.export.cards import dataset_card
    from engine.data.export.records import ExportRequest, PreferenceRow
    from engine.data.report import round_table

    choice = AutoChoice("no_reference", "judge_check", figures(implicit=(13, 20), no_reference=(16, 20)), 0.0125)
    metrics = [Metric(job_id=1, name=k, value=v, round=1, stage="judge") for k, v in choice.metrics().items()]
    back = choices_from_metrics(metrics)[1]
    assert (back.variant, back.basis, back.n, back.length_alpha) == ("no_reference", "judge_check", 20, 0.0125)
    assert back.figures["implicit"].agree == 0.65 and back.figures["no_reference"].lo == pytest.approx(
        wilson_interval(16, 20)[0]
    )
    assert choices_from_metrics(metrics[:1]) == {}  # a choice without its basis is no choice

    store = Store(tmp_path / "t.db")
    job = store.enqueue(Job(project_id=store.ensure_project("p").id, kind="run"))
    store.add_metrics([Metric(job_id=job, name=m.name, value=m.value, round=1, stage="judge") for m in metrics])
    table = round_table(store, job)
    assert "| auto judge | its agree [95%], on |" in table
    assert f"| no_reference | 0.800 [{wilson_interval(16, 20)[0]:.3f}, " in table and "20 judge-check pairs" in table
    row = PreferenceRow([{"role": "user", "content": "q"}], "c", "r", 1, "self", 0.7, 0.1, 0.0, False, job)
    card = dataset_card("p", [row], False, ExportRequest("p", "dataset", "out"), {(job, 1): back})
    assert "## Judge (judge.kind: auto)" in card and f"| {job} | 1 | no_reference | judge-check" in card
    assert "auto judge: no_reference (best lower bound on 20 judge-check pairs: implicit 0.650" in card
    assert "judge.kind: auto" not in dataset_card("p", [row], False, ExportRequest("p", "dataset", "out"))
    store.close()


# --- a round relabelled from its stored numbers ----------------------------------------------------------------


def judged_round(store: Store, scores: PairScores, round_index: int = 1, job: int | None = None) -> tuple[int, int]:
    """One run's round of pairs with the given stored numbers, labelled by the implicit judge (as judge_pending
    leaves them)."""
    project = store.ensure_project("p")
    job = job or store.enqueue(Job(project_id=project.id, kind="run"))
    implicit = variant_choices(scores)["implicit"]
    pairs = []
    for k in range(len(scores)):
        label = "a" if bool(implicit.a_preferred[k]) else "b"
        values = {f.name: float(getattr(scores, f.name)[k]) for f in PairScores.__dataclass_fields__.values()}
        pairs.append(
            Pair(
                job_id=job,
                round=round_index,
                prompt=[{"role": "user", "content": f"q{round_index}.{k}"}],
                response_a=f"a{k}",
                response_b=f"b{k}",
                project_id=project.id,
                judge_label=label,
                label=label,
                label_source="self",
                margin=float(implicit.margin[k]),
                **values,
            )
        )
    store.add_pairs(pairs)
    return project.id, job


def check_result(**counts: tuple[int, int]) -> judge_check.JudgeCheckResult:
    judges = {name: judge_check.JudgeEstimate(e.agree, e.lo, e.hi, e.n) for name, e in figures(**counts).items()}
    return judge_check.JudgeCheckResult(judges, judge_check.choose(judges), 0.5)


def test_relabel_uses_the_checks_choice_then_the_audit_and_keeps_a_stored_choice(tmp_path):
    store = Store(tmp_path / "r.db")
    scores = hand_scores()
    project, job = judged_round(store, scores)
    store.add_metrics(judge_check.to_metrics(check_result(implicit=(12, 20), no_reference=(17, 20)), job))
    first = store.pairs(job, 1)
    store.set_label(first[3].id, "a", "human")  # a person's label stays through the relabel
    cfg = parse_config("model: m\nbeta: 0.1\njudge:\n  kind: auto\n")
    choice = auto_judge.relabel(StageContext(store, job, project, cfg, 1, "judge"))
    assert (choice.variant, choice.basis) == ("no_reference", "judge_check")
    want = variant_scores(scores, "no_reference", VariantParams(beta=0.1))
    pairs = store.pairs(job, 1)
    assert [p.judge_label for p in pairs] == ["a", "a", "b", "b"]
    assert [p.label for p in pairs] == ["a", "a", "b", "a"] and pairs[3].label_source == "human"
    assert [p.reward_a for p in pairs] == pytest.approx(want.score_a.tolist())
    assert [p.margin for p in pairs] == pytest.approx([0.1, 0.1, 0.2, 0.3])
    assert [p.confidence for p in pairs] == pytest.approx(torch.sigmoid(want.choice.margin).tolist())
    stored = choices_from_metrics(store.metrics(job))[1]
    assert (stored.variant, stored.length_alpha) == ("no_reference", choice.length_alpha)

    # new check figures would now choose implicit: a resumed stage keeps the choice stored for the round
    store.add_metrics(judge_check.to_metrics(check_result(implicit=(19, 20), no_reference=(10, 20)), job))
    again = auto_judge.relabel(StageContext(store, job, project, cfg, 1, "judge"))
    assert (again.variant, again.basis) == ("no_reference", "judge_check")
    assert [p.judge_label for p in store.pairs(job, 1)] == ["a", "a", "b", "b"]

    # round 2: twelve blind answers of round 1 that follow init_per_token, with eight more pairs that init_per_token
    # and no_reference call a and the implicit reward b (0.1 vs 0.3)
    judged_round(store, scores, 2, job)
    extra = PairScores.of(*([[v] * 8 for v in (-1.0, -2.0, -2.0, -5.0, 1.0, 1.0)]))
    judged_round(store, extra, 1, job)
    round_1 = store.pairs(job, 1)
    store.set_audit_sample(job, 1, [p.id for p in round_1])
    init_choice = variant_choices(PairScores.from_pairs(round_1))["init_per_token"]
    for p, a in zip(round_1, init_choice.a_preferred.tolist()):
        store.set_label(p.id, "a" if a else "b", "human", via="audit")
    second = auto_judge.relabel(StageContext(store, job, project, cfg, 2, "judge"))
    assert (second.variant, second.basis, second.n) == ("init_per_token", "audit", 12)
    assert (second.figures["init_per_token"].agree, second.figures["no_reference"].agree) == (1.0, 11 / 12)
    assert second.figures["implicit"].agree == 4 / 12
    assert [p.judge_label for p in store.pairs(job, 2)] == ["a", "a", "a", "b"]
    assert "auto judge: init_per_token (best lower bound on 12 blind audit answers" in "\n".join(
        e["message"] for e in store.events(job, limit=50)
    )
    store.close()


# --- the two training-set controls ------------------------------------------------------------------------------


def test_keep_top_fraction_drops_the_lowest_margins_and_replay_adds_seed_pairs(tmp_path):
    store = Store(tmp_path / "t.db")
    project = store.ensure_project("p")
    seeds = [
        Example(role="seed", prompt=[{"role": "user", "content": f"s{i}"}], chosen=f"good {i}", rejected=f"bad {i}")
        for i in range(3)
    ]
    store.add_examples(project.id, seeds)
    job = store.enqueue(Job(project_id=project.id, kind="run"))
    margins = [0.6, 0.1, 0.5, 0.2, 0.4, 0.3]
    store.add_pairs(
        [
            Pair(
                job_id=job,
                round=1,
                prompt=[{"role": "user", "content": f"q{i}"}],
                response_a=f"a{i}",
                response_b=f"b{i}",
                project_id=project.id,
                judge_label="a",
                label="a",
                label_source="self",
                margin=m,
                logp_policy_a=-1.0,
                logp_policy_b=-2.0,
            )
            for i, m in enumerate(margins)
        ]
    )
    ids = [p.id for p in store.pairs(job, 1)]
    store.set_label(ids[1], "b", "human")  # the lowest margin, but a person's label: it stays

    def rows(**train):
        cfg = parse_config("model: m\n", "t", [f"train.{k}={v}" for k, v in train.items()])
        return training_rows(StageContext(store, job, project.id, cfg, 1, "train"))

    today = rows()
    assert [r.pair_id for r in today] == ids and all(r.pair_id is not None for r in today)
    assert not [m for m in store.metrics(job) if m.name.startswith("round/")]  # off: nothing recorded
    # five self labels, top 0.5 → ceil(2.5) = 3 of them (margins 0.6, 0.5, 0.4), plus the human label
    half = rows(keep_top_fraction=0.5)
    assert [r.pair_id for r in half] == [ids[0], ids[1], ids[2], ids[4]]
    assert half[1].trusted and not half[0].trusted
    replay = rows(keep_top_fraction=0.5, replay_labelled=0.5)  # round(0.5 × 4) = 2 seed pairs
    assert [r.pair_id for r in replay[:4]] == [r.pair_id for r in half]
    added = replay[4:]
    assert len(added) == 2 and all(r.pair_id is None and r.trusted and r.ref_chosen_logp is None for r in added)
    assert {(r.chosen, r.rejected) for r in added} < {(s.chosen, s.rejected) for s in seeds}
    metrics = {m.name: m.value for m in store.metrics(job)}
    assert (metrics["round/dropped_by_margin"], metrics["round/replayed_seed_pairs"]) == (2, 2)
    many = rows(replay_labelled=2.0)[6:]  # 12 from 3 seed pairs: each 4 times
    assert sorted(r.chosen for r in many) == sorted([s.chosen for s in seeds] * 4)
    assert [r.chosen for r in rows(replay_labelled=2.0)[6:]] == [r.chosen for r in many]  # seeded: the same again
    store.close()


def test_keep_top_and_replay_sample_by_hand():
    pairs = [
        Pair(job_id=1, round=1, prompt=[], response_a="", response_b="", id=i, margin=m, label="a", label_source=s)
        for i, (m, s) in enumerate([(0.2, "self"), (0.2, "self"), (0.9, "gold"), (0.1, "self")])
    ]
    assert [p.id for p in keep_top_by_margin(pairs, 1.0)] == [0, 1, 2, 3]
    assert [p.id for p in keep_top_by_margin(pairs, 0.34)] == [0, 1, 2]  # ceil(1.02) = 2: the tie at 0.2 both in
    assert [p.id for p in keep_top_by_margin(pairs, 0.1)] == [0, 2]  # at least one; a tie goes to the earlier pair
    sample = replay_sample(7, 3, "s")
    assert len(sample) == 7 and sorted(sample[:3]) == sorted(sample[3:6]) == [0, 1, 2]
    assert replay_sample(5, 0, "s") == [] and replay_sample(0, 3, "s") == []


# --- a real run on the mini demo world --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from benchmarks.harness import mini_world

    return mini_world(tmp_path_factory.mktemp("auto_world"))


def auto_config(world, tmp: Path, **over) -> str:
    """One round of 16 prompts with judge.kind auto, on ten labelled pairs (the mini world's seed and eval pairs:
    its seed file alone holds two, too few to cross-fit)."""
    from benchmarks.harness import run_config

    labels = tmp / "labels.jsonl"
    labels.write_text(world.seed_file.read_text() + world.eval_file.read_text())
    over = {"rounds": 1, "seed_data": str(labels), "judge": {"kind": "auto", "batch_size": 16}, **over}
    return run_config(world, tmp / "out", **over)


def test_an_auto_run_checks_its_labels_labels_with_the_choice_and_a_second_run_reuses_the_check(world, tmp_path):
    from benchmarks.inline import run_inline
    from engine.data import ExportRequest, export
    from engine.data.report import round_table

    cfg = parse_config(auto_config(world, tmp_path))
    run = run_inline(cfg, tmp_path / "auto.db")
    store, job = run.store, run.job_id
    check = judge_check.from_metrics(store.metrics(job))
    pairs = judge_check.labelled_pairs(store, run.project_id, cfg)
    assert len(pairs) == 10 and all(e.n == 10 for e in check.judges.values())
    assert check.fingerprint == auto_judge.fingerprint(cfg, pairs) == auto_judge.fingerprint(cfg, pairs[::-1])
    choice = choices_from_metrics(store.metrics(job))[1]
    assert (choice.variant, choice.basis) == (check.chosen, "judge_check")
    assert choice.figures == auto_judge.check_figures(check)
    # the round's labels are the chosen variant's, recomputed here from the stored numbers
    judged = store.pairs(job, 1)
    want = variant_scores(PairScores.from_pairs(judged), choice.variant, VariantParams(cfg.beta, choice.length_alpha))
    assert [p.label for p in judged] == ["a" if a else "b" for a in want.choice.a_preferred.tolist()]
    assert [p.margin for p in judged] == pytest.approx(want.choice.margin.tolist())
    log = "\n".join(e["message"] for e in store.events(job, limit=200))
    assert "[round 0 judge-check] fold 5/5" in log and f"[round 1 judge] auto judge: {choice.variant} (" in log
    assert f"| {choice.variant} | " in round_table(store, job)
    card = export(tmp_path / "auto.db", ExportRequest(cfg.project, "dataset", str(tmp_path / "ds")))
    assert f"| {job} | 1 | {choice.variant} | judge-check" in (card / "README.md").read_text()

    # the same project, pairs and settings: the next run copies the stored check instead of cross-fitting again
    again = run_inline(parse_config(auto_config(world, tmp_path, rounds=0)), tmp_path / "auto.db")
    log = "\n".join(e["message"] for e in store.events(again.job_id, limit=200))
    assert f"judge-check of job {job} reused: the same 10 labelled pairs" in log and "fold 1/" not in log
    assert judge_check.from_metrics(store.metrics(again.job_id)).judges == check.judges
    again.store.close()
    store.close()


def test_an_auto_run_without_enough_labels_fails_before_training_and_says_why(world, tmp_path):
    from benchmarks.harness import run_config
    from benchmarks.inline import run_inline

    cfg = parse_config(run_config(world, tmp_path / "out", rounds=1, judge={"kind": "auto"}))  # two seed pairs
    with pytest.raises(
        ValueError,
        match=r"judge.kind auto picks the judge .*: 2 labelled pairs: cross-fitting 2 "
        r"folds needs at least 4 .*name the judge \(judge.kind: implicit\)",
    ):
        run_inline(cfg, tmp_path / "few.db")
    assert not (tmp_path / "out" / "round_0").exists()  # no seed round trained


@pytest.mark.slow
def test_the_studio_runs_an_auto_run_and_its_api_returns_the_choice(world, tmp_path):
    """UI → storage → worker → storage → UI: a run queued through the API with judge.kind auto goes through its
    judge-check stage, and /job_metrics returns the choice its judge stage stored."""
    from gradio_client import Client

    from tests.test_studio_api import start_studio, stop_studio

    studio = start_studio(tmp_path / "studio.db")
    try:
        client = Client(studio.url, verbose=False)
        client.predict("auto", "", api_name="/create_project")
        job_id = client.predict("auto", auto_config(world, tmp_path), api_name="/queue_run")["job_id"]
        deadline = time.monotonic() + 600
        status = client.predict(job_id, api_name="/job_status")
        while status["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(2)
            status = client.predict(job_id, api_name="/job_status")
        assert status["status"] == "done", status
        assert {"round": 0, "stage": "judge-check", "state": "done"} in status["plan"]
        metrics = client.predict(job_id, api_name="/job_metrics")
        chosen = [m["name"].split("/")[-1] for m in metrics if m["name"].startswith("judge/auto_choice/")]
        basis = [m for m in metrics if m["name"] == "judge/auto_basis/judge_check"]
        checked = {m["name"]: m["value"] for m in metrics if m["name"].startswith("judge_check/")}
        assert len(chosen) == 1 and chosen[0] in VARIANT_NAMES and basis[0]["round"] == 1 and basis[0]["value"] == 10
        lows = {name: checked[f"judge_check/{name}/lo"] for name in VARIANT_NAMES}
        assert lows[chosen[0]] == max(lows.values())
    finally:
        stop_studio(studio)
