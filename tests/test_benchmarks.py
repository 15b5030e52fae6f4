"""benchmarks/throughput.py on a toy model, in-process: the naive and the studio judge must agree numerically."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from engine.method import models
from engine.method.encoding import prompt_ids, response_ids
from engine.worlds.toy_model import save_toy_model

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    [{"role": "user", "content": text}]
    for text in (
        "sort: 3 1 2",
        "reverse: abc",
        "next: 1999",
        "max: 4 9 2",
        "a somewhat longer prompt " * 3,
        "hi",
        "count the letters in banana",
        "sort: 9 8 7 6 5 4",
    )
]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_throughput_quick(tmp_path):
    bench = load("throughput")
    model_dir = save_toy_model(tmp_path / "toy", hidden=32, layers=1, heads=2)
    prepared = bench.run_task(dict(task="prepare_model", source=str(model_dir), workdir=str(tmp_path)), inline=True)
    w = bench.Workload(
        "toy",
        "toy model",
        str(model_dir),
        gen_prompts=3,
        max_new_tokens=12,
        gen_batch=8,
        judge_pairs=8,
        judge_batch=3,
        train_pairs=6,
        micro_batch=2,
        batch=2,
    )
    result = bench.run_workload(w, prepared, tmp_path, threads=1, inline=True, log=lambda text: None, prompts=PROMPTS)

    agree = result["agreement"]
    assert agree["pairs"] == 8
    assert agree["max_logp_diff"] < 1e-4  # batched, left-padded, logits_to_keep vs one unpadded sequence at a time
    assert agree["max_reward_diff"] < 1e-5
    assert agree["labels_equal"] == 8 and bench.judges_equal(agree)
    assert bench.judges_equal(result["agreement_rescore"]) and result["agreement_rescore"]["labels_equal"] == 8
    studio, rescore, naive = (result["judge"][v] for v in ("studio", "rescore", "naive"))
    pairs = json.loads((tmp_path / "toy-pairs.json").read_text())
    tok = models.load_tokenizer(str(model_dir))
    lengths = [
        (
            len(prompt_ids(tok, x["prompt"])),
            len(response_ids(tok, x["a"])),
            len(response_ids(tok, x["b"])),
            x["logp_a"] is not None and x["logp_b"] is not None,
        )
        for x in pairs[:8]
    ]
    assert studio["sampled_logps"] == sum(kept for *_, kept in lengths) > 0  # from sampling, cut answers too
    assert naive["tokens"] == sum(2 * (2 * p + a + b) for p, a, b, _ in lengths)  # each sequence, both models
    assert rescore["tokens"] == sum(2 * (p + a + b) for p, a, b, _ in lengths)  # the prompt once per pair
    assert studio["tokens"] == sum((1 if kept else 2) * (p + a + b) for p, a, b, kept in lengths)
    assert result["judge"]["studio_all"]["tokens"] == sum(p + a + b for p, a, b, _ in lengths)  # π_init only
    assert bench.judges_equal(result["agreement_all"])
    # stored reference log-probs and a reference forward every step train the same model
    losses = [result["train"][v]["losses"] for v in ("stored", "recompute")]
    assert len(losses[0]) == len(losses[1]) == 3
    assert result["train_loss_max_diff"] < 1e-5
    assert {v: r["steps"] for v, r in result["train"].items()} == dict.fromkeys(
        ("recompute", "stored", "stored_refine", "trl"), 3
    )

    ratios = bench.ratios(result)
    assert all(v > 0 for k, v in ratios.items() if k != "judge_memory")  # in-process, a peak RSS may not move
    report = dict(
        date="today",
        command="python benchmarks/throughput.py",
        seconds=1.0,
        load_before=(0, 0, 0),
        load_after=(0, 0, 0),
        machine=bench.machine(1, {}),
        results={"toy": result},
        ratios={"toy": ratios},
        ceiling={},
    )
    ceiling = bench.run_task(dict(task="matmul", device="cpu", dtype="float32", threads=1), inline=True)
    assert ceiling["n"] == 2048 and ceiling["tflops"] > 0
    report["ceiling"]["toy"] = dict(
        ceiling_tflops=ceiling["tflops"],
        n=ceiling["n"],
        judge_tokens_per_s=100.0,
        judge_tflops=0.002,
        naive_tflops=0.001,
        fraction=0.5,
        naive_fraction=0.25,
        target_fraction=1.5,
    )
    report["targets"] = bench.targets(report)
    text = bench.render(report)
    assert "| judge | studio" in text and "equal results: yes" in text
    assert "matmul rate on the cpu" in text and "= 50.0% of the ceiling" in text and "= 25.0%." in text
    assert "would take 150% of the ceiling" in text and "studio rescoring" in text


def test_spa_table_verdict_gives_the_gap_and_its_standard_error():
    from benchmarks import spa_table

    def outs(golds, labels):
        return [spa_table.Outcome(gold=g, win=0.5, labels=labels) for g in golds]

    rows = {
        "SPA": outs([0.60, 0.62, 0.64], 64),
        spa_table.OFFLINE_100_TUNED: outs([0.61, 0.62, 0.66], 2004),
        spa_table.ON_POLICY_100: outs([0.50, 0.52, 0.54], 1800),
        spa_table.ON_POLICY_100_TUNED: outs([0.55, 0.57], 1800),
    }
    text = spa_table.verdict(rows, "SPA")
    assert text.startswith("SPA (64 labels): ")
    # Δ = 0.62 − 0.63; sample variances 0.0004 and 0.0007: √(0.0004/3 + 0.0007/3) = 0.0191. Seed by seed the
    # differences are −0.01, 0, −0.02 (none above): standard deviation 0.01, so 0.01/√3 = 0.0058.
    assert (
        f'NOT reached against "{spa_table.OFFLINE_100_TUNED}" (0.620 vs 0.630: Δ -0.010, standard error 0.019; '
        f"paired by seed: 0/3 seeds above, standard error 0.006)"
    ) in text
    assert (
        f'reached against "{spa_table.ON_POLICY_100}" (0.620 vs 0.520: Δ +0.100, standard error 0.016; '
        f"paired by seed: 3/3 seeds above, standard error 0.000)"
    ) in text
    # different seed counts cannot pair: √(0.0004/3 + 0.0002/2) = 0.0153
    assert (
        f'reached against "{spa_table.ON_POLICY_100_TUNED}" (0.620 vs 0.560: Δ +0.060, standard error 0.015)'
    ) in text
    assert spa_table.OFFLINE_100 not in text  # rows that did not run get no verdict


def test_spa_table_labels_column_gives_a_range_when_seeds_differ():
    from benchmarks import spa_table

    def outs(*labels):
        return [spa_table.Outcome(gold=0.5, win=0.5, labels=n) for n in labels]

    assert spa_table.labels_used(outs(64, 64, 64)) == "64"
    assert spa_table.labels_used(outs(1825, 1789, 1816)) == "1789/1816/1825"
    assert spa_table.labels_used(outs(1821, 1789, 1833, 1810)) == "1789–1833"


def test_spa_table_header_names_the_world_and_a_command_that_pastes(monkeypatch, tmp_path):
    import argparse

    from benchmarks import spa_table
    from engine.config import load_config

    # a fresh machine has no demo world: fake the one file the human-label budget reads (1% of the pool)
    (tmp_path / "world.json").write_text(json.dumps({"counts": {"pool": 1920}}))
    monkeypatch.setenv("SPA_DEMO_DIR", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["spa_table.py", "--seeds", "2", "--only", "SPA, judge without reference"])
    rows = {spa_table.SPA_NO_REF_BEST: [spa_table.Outcome(gold=0.6, win=0.5, labels=64)] * 2}
    base = load_config(ROOT / "configs" / "demo.yaml")
    text = spa_table.render(
        rows, argparse.Namespace(split="eval", seeds=2), base, 60.0, "SFT weights sha256 0123456789ab, SFT gold 0.522"
    )
    first = text.splitlines()[0]
    assert first.startswith("Demo world (SFT weights sha256 0123456789ab, SFT gold 0.522), eval prompts, seeds [0, 1]")
    assert "`python benchmarks/spa_table.py --seeds 2 --only 'SPA, judge without reference'`, 1.0 min." in first
    assert spa_table.spa_no_ref_human(base).endswith("+ 18 human labels, lowest confidence")  # 19.2 → 6 × 3 rounds


def test_stage_times_pairs_each_stage_start_with_its_end():
    stage_times = load("stage_times")
    events = [
        {"at": f"2026-12-03T16:{m:02d}:{s:02d}+00:00", "message": msg}
        for m, s, msg in (
            (0, 0, "[round 0 seed] started"),
            (1, 0, "[round 0 seed] 1/15, ETA 20s"),
            (5, 30, "[round 0 seed] done"),
            (5, 30, "[round 1 generate] started"),
            (6, 0, "[round 1 generate] stopped"),  # no done: not counted
            (7, 0, "[round 1 generate] started"),
            (10, 15, "[round 1 generate] done"),
        )
    ]
    assert stage_times.stage_minutes(events) == [(0, "seed", 5.5), (1, "generate", 3.25)]


def test_text_bf16_compares_labels_and_rounding_against_margins_by_hand():
    text_bf16 = load("text_bf16")
    high = dict(reward_a=[0.30, -0.10, 0.02], reward_b=[0.10, 0.20, 0.00], a_preferred=[True, False, True])
    low = dict(reward_a=[0.28, -0.05, 0.00], reward_b=[0.12, 0.20, 0.01], a_preferred=[True, False, False])
    a = text_bf16.label_agreement(low, high)
    assert (a["pairs"], a["labels_equal"]) == (3, 2)
    assert a["max_reward_diff"] == pytest.approx(0.05) and a["median_reward_diff"] == pytest.approx(0.02)
    assert a["median_margin"] == pytest.approx(0.20) and a["flipped_margins"] == pytest.approx([0.02])


def test_text_judge_scores_each_judge_against_gold_by_hand():
    text_judge = load("text_judge")
    scores = text_judge.Scores
    pi0 = scores(torch.tensor([-10.0, -20.0, -30.0, -8.0]), torch.tensor([-12.0, -18.0, -30.0, -9.0]))
    pi_init = scores(torch.tensor([-11.0, -19.0, -31.0, -6.0]), torch.tensor([-11.0, -19.0, -29.0, -10.0]))
    lengths = scores(torch.tensor([10.0, 20.0, 30.0, 2.0]), torch.tensor([20.0, 10.0, 30.0, 4.0]))
    rows = dict(text_judge.judge_rows("x", pi0, pi_init, 0.1, lengths))
    # rewards β·(π_0 − π_init), chosen vs rejected: 0.1 vs −0.1 right; −0.1 vs 0.1 wrong; 0.1 vs −0.1 right;
    # −0.2 vs 0.1 wrong: 2 of 4
    assert rows["implicit, β·[logp(π_0) − logp(π_init)] (x)"] == 0.5
    # per token: 0.01 vs −0.005 right; −0.005 vs 0.01 wrong; 0.0033 vs −0.0033 right; −0.1 vs 0.025 wrong
    assert rows["implicit per token (x)"] == 0.5
    # no reference: −10 > −12 right; −20 < −18 wrong; −30 = −30 half; −8 > −9 right: 2.5 of 4
    assert rows["no reference, β·logp(π_0) (x)"] == 0.625
    assert text_judge.right(-lengths.chosen, -lengths.rejected) == 0.625  # shorter: right, wrong, tie, right


def test_text_table_rows_read_their_figures_and_count_their_labels(tmp_path):
    text_table = load("text_table")
    from benchmarks.inline import InlineRun, with_overrides
    from engine.config import ConfigError, load_config
    from storage import Example, Job, Metric, Pair, Store

    base = load_config(ROOT / "configs" / "text_demo.yaml")
    assert text_table.shared_sample_chunks(base, base) == 1  # 50 prompts: one chunk of 64
    rows = text_table.rows(base)
    anchor = with_overrides(base, **rows["anchor"][1])
    assert text_table.shared_sample_chunks(with_overrides(base, **rows["dpo100"][1]), base) == 1
    assert text_table.shared_sample_chunks(with_overrides(base, **rows["noref_bo4"][1]), base) == 0
    assert (anchor.epochs, anchor.prompts_for_round(1), anchor.generation.samples_per_prompt) == (0, 160, 4)
    with pytest.raises(ConfigError, match="judge.kinds"):  # validated like `launch.py run --set`: names the key
        with_overrides(base, judge__kinds="gold")
    # text_demo.yaml: 2 rounds × 50 prompts; 1% is half a label a round (at least one), 10% is five
    assert (text_table.human_budget(base), text_table.human_budget(base, 0.1)) == (1, 5)
    assert text_table.rows(base, 0.1)["random"][0] == "SPA + 10 human labels, at random"

    store = Store(tmp_path / "t.db")
    project = store.ensure_project("p")
    job = store.enqueue(Job(project_id=project.id, kind="run"))
    store.add_examples(
        project.id, [Example(role="pool", prompt=[{"role": "user", "content": f"q{i}"}]) for i in range(3)]
    )
    ids = [e.id for e in store.examples(project.id, "pool")]
    store.add_pairs(
        [
            Pair(
                job_id=job,
                round=1,
                prompt=[{"role": "user", "content": f"q{i}"}],
                response_a="x",
                response_b="y",
                example_id=ids[i],
                project_id=project.id,
                gold_a=ga,
                gold_b=gb,
            )
            for i, (ga, gb) in enumerate([(1.0, 0.5), (0.5, 0.5), (0.0, 1.0)])
        ]
    )
    store.add_metrics(
        [
            Metric(job_id=job, name=n, round=r, value=v)
            for n, r, v in (
                ("text/eval/init/prompt_strict", 0, 0.208),
                ("text/eval/prompt_strict", 0, 0.208),
                ("text/eval/prompt_strict", 1, 0.292),
                ("text/eval2/init/instruction_loose", 0, 0.341),
            )
        ]
    )
    run = InlineRun(store, job, project.id)
    start, trained = text_table.row_results("anchor", "anchor", run, anchor, 60.0)
    assert start.eval == {"prompt_strict": 0.208, "win_rate_vs_init": 0.5}
    assert start.eval2 == {"instruction_loose": 0.341, "win_rate_vs_init": 0.5}
    assert (trained.labels, trained.eval, trained.seconds) == (2, {"prompt_strict": 0.292}, 60.0)  # a tie is no label
    pi0, spa = text_table.row_results("spa_bvw", "SPA, seed of best vs worst", run, anchor, 60.0)
    assert pi0.name.startswith("DPO on the best-vs-worst seed") and pi0.eval == {"prompt_strict": 0.208}
    assert spa.eval == {"prompt_strict": 0.292} and spa.labels == 0  # no seed rows in this store, no human labels
    pi0, spa = text_table.row_results("seed_builder", "SPA, seed builder", run, anchor, 60.0)
    assert pi0.name == "DPO on the seed builder's seed (0 pairs)" and pi0.eval == {"prompt_strict": 0.208}
    from engine.runtime import auto_judge

    choice = auto_judge.AutoChoice("implicit", "judge_check", {"implicit": auto_judge.estimate(0.6, 0.39, 0.78, 20)})
    store.add_metrics([Metric(job_id=job, name=n, round=1, value=v) for n, v in choice.metrics().items()])
    (auto,) = text_table.row_results("auto", "SPA, auto", run, anchor, 60.0)
    assert auto.name == "SPA, auto — r1: implicit (judge_check: 0.600 [0.390, 0.780])"
    store.close()


def test_text_reeval_paired_statistics_by_hand():
    reeval = load("text_reeval")
    # 7 prompts only A follows, 1 only B: 2·(C(8,0) + C(8,1)) / 2^8 = 18/256
    assert reeval.sign_test_p(7, 1) == pytest.approx(18 / 256)
    assert reeval.sign_test_p(3, 3) == 1.0 and reeval.sign_test_p(0, 0) == 1.0
    d = reeval.paired_difference([True, True, True, False], [True, False, False, False])
    # per-prompt differences 0, 1, 1, 0: mean ½, sample variance 1/3, half-width 1.96·√(1/3 / 4)
    assert (d.prompts, d.a_only, d.b_only) == (4, 2, 0)
    assert d.difference == 0.5 and d.sign_test_p == 0.5
    half_width = 1.96 * (1 / 12) ** 0.5
    assert d.low == pytest.approx(0.5 - half_width) and d.high == pytest.approx(0.5 + half_width)
    with pytest.raises(ValueError):
        reeval.paired_difference([True], [True, False])


def test_text_reeval_pairs_prompts_or_instructions():
    from engine.worlds.ifeval_tasks import GoldScore

    reeval = load("text_reeval")
    a = [GoldScore([True, True], [True, True]), GoldScore([True], [True]), GoldScore([False, True], [True, True])]
    b = [GoldScore([True, False], [True, True]), GoldScore([False], [False]), GoldScore([False, False], [True, True])]
    prompt = reeval.comparison("A", "B", "few", "prompt", a, b)["difference"]
    assert (prompt["prompts"], prompt["a_only"], prompt["b_only"]) == (3, 2, 0)  # A follows prompts 1 and 2 fully
    instruction = reeval.comparison("A", "B", "few", "instruction", a, b)
    d = instruction["difference"]
    assert instruction["level"] == "instruction" and (d["prompts"], d["a_only"], d["b_only"]) == (5, 3, 0)
    assert d["difference"] == pytest.approx(3 / 5) and d["sign_test_p"] == pytest.approx(0.25)


def test_text_reeval_renders_the_few_split_at_one_or_two_budgets():
    reeval = load("text_reeval")
    split = {"prompt_strict": 0.5, "instruction_strict": 0.5, "instruction_loose": 0.6, "prompt_loose": 0.5}
    model = {"name": "M", "eval": split, "eval2": split, "eval_first": split, "pooled_prompt_strict": 0.5}
    model |= {"few": {**split, "cut": 3}, "few_budget": {**split, "cut": 0}}
    table = {"sizes": {"eval": 2, "eval2": 2}, "run_sizes": {"eval": 2, "eval2": 1}, "when": "now"}
    table |= {"models": [model], "comparisons": []}
    few = {"prompts": 2, "instructions": 3, "run_budget": "few@128"}
    both = reeval.render({**table, "few": {**few, "budget": "few@400"}}, "cmd", 1.0)
    assert "| few@400 cut |" in both and "| M | 0.500 | 0.500 | 0.600 | 3 | 0.500 | 0.500 | 0.600 | 0 |" in both
    one = reeval.render({**table, "few": {**few, "budget": None}}, "cmd", 1.0)
    assert "few@400" not in one and "--few-budget 0" in one and "| M | 0.500 | 0.500 | 0.600 | 3 |\n" in one


def test_text_reeval_model_argument():
    reeval = load("text_reeval")
    assert reeval.ModelRef.parse("DPO-100%=runs/a:b.db:1") == reeval.ModelRef("DPO-100%", "runs/a:b.db", 1)
    assert reeval.ModelRef.parse("SmolLM2=x.db:init").round is None
    for bad in ("x.db:1", "A=x.db", "A=x.db:last"):
        with pytest.raises(SystemExit):
            reeval.ModelRef.parse(bad)


def test_human_corrections_label_the_first_pairs_of_each_review_order_by_gold(tmp_path):
    from benchmarks.inline import human_corrections
    from engine.config import load_config
    from engine.runtime.context import StageContext
    from storage import Job, Pair, Store

    store = Store(tmp_path / "h.db")
    project = store.ensure_project("p")
    job = store.enqueue(Job(project_id=project.id, kind="run"))
    # (confidence, judge's label, the no-reference judge's label via logp π_{i-1}, gold a, gold b)
    spec = [
        (0.55, "a", "a", 1.0, 0.0),
        (0.51, "a", "b", 0.0, 1.0),
        (0.90, "b", "a", 1.0, 0.5),
        (0.60, "a", "a", 0.5, 0.5),
        (0.52, "b", "b", 0.0, 1.0),
        (0.95, "a", "a", 0.0, 0.5),
    ]
    store.add_pairs(
        [
            Pair(
                job_id=job,
                round=1,
                prompt=[{"role": "user", "content": f"q{i}"}],
                response_a="x",
                response_b="y",
                project_id=project.id,
                confidence=c,
                judge_label=j,
                label=j,
                label_source="self",
                logp_policy_a=-1.0 if n == "a" else -2.0,
                logp_policy_b=-1.5,
                gold_a=ga,
                gold_b=gb,
            )
            for i, (c, j, n, ga, gb) in enumerate(spec)
        ]
    )
    ids = [p.id for p in store.pairs(job, 1)]
    cfg = load_config(ROOT / "configs" / "text_demo.yaml")

    def humans(by: str, stage: str = "judge") -> dict[int, str]:
        for p in store.pairs(job, 1):  # back to the judge's labels
            store.update_pairs({p.id: {"label": p.judge_label, "label_source": "self"}})
        human_corrections(3, by, seed=7)(StageContext(store, job, project.id, cfg, 1, stage))
        return {ids.index(p.id): p.label for p in store.pairs(job, 1) if p.label_source == "human"}

    # the pair whose gold ties (3) is never picked; each picked pair gets gold's side
    assert humans("uncertain") == {1: "b", 4: "b", 0: "a"}  # least confident first
    assert humans("disagree") == {1: "b", 2: "a", 4: "b"}  # judges disagree on 1 and 2, then least confident
    assert humans("confident") == {5: "b", 2: "a", 0: "a"}
    picked = humans("random")
    assert (
        len(picked) == 3
        and 3 not in picked
        and all(picked[i] == ("a" if spec[i][3] > spec[i][4] else "b") for i in picked)
    )
    assert humans("uncertain", stage="train") == {}  # only after a judge stage
    with pytest.raises(ValueError, match="confidence"):  # the old name, before a run starts rather than inside it
        human_corrections(3, "confidence", seed=7)
    store.close()
