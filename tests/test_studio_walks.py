"""A newcomer's walks through the studio in a real browser (Debian's chromium through Playwright), with a real
worker training on a mini demo world (built once per module, about 10 s):

1. what you type is what runs: keystrokes in the form and Queue pressed at once; out-of-range values refused;
2. fresh database → demo project → change lr and rounds → Run → the queued config is what was typed → review,
   correct, write a better answer, undo, bulk-accept the top half → export → the exported dataset says so;
3. a new project from uploaded files, run with the defaults to the end."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.config import parse_config
from storage import Store
from tests.browser import wait_until
from tests.test_studio_api import start_studio, stop_studio

pytestmark = pytest.mark.browser
RUN_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("walk_world"), size=WorldSize.mini(), progress=lambda *a: None)


def open_studio(browser, studio):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(studio.url)
    page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=30_000)
    return page, errors


@contextmanager
def demo_studio(browser, db: Path, *args: str):
    """A studio on a fresh database, its page open on the demo project; (studio, store, page, errors)."""
    studio = start_studio(db, *args)
    store = Store(studio.db)
    try:
        page, errors = open_studio(browser, studio)
        wait_until(lambda: "demo" in page.inner_text("#project-counts"), what="the demo project")
        yield studio, store, page, errors
    finally:
        store.close()
        stop_studio(studio)


def field(page, elem: str):
    return page.locator(f"#{elem} input, #{elem} textarea").first


def type_into(page, elem: str, text: str) -> None:
    """Clear a form field and type into it key by key, as a person does."""
    box = field(page, elem)
    box.fill("")
    box.press_sequentially(text)


def queue(page) -> str:
    """Press Queue on the Run tab; the new message it answers with."""
    page.get_by_role("tab", name="Run").click()
    before = page.inner_text("#run-message")
    page.click("#queue-run")

    def answered():
        text = page.inner_text("#run-message")
        # Gradio's status over the old message while the event waits or runs: "queue: 1/1 | 0.6/0.9s", "0.4s"
        pending = "processing" in text or re.match(r"^\s*(queue:|[\d.]+s)", text) is not None
        return not pending and text != before and ("Queued run" in text or "Not queued" in text) and text

    return wait_until(answered, what="the answer to Queue")


def wait_for_status(store: Store, job_id: int, states: tuple[str, ...], timeout: float = RUN_TIMEOUT_S):
    def reached():
        job = store.job(job_id)
        if job.status == "failed":
            raise AssertionError(f"run #{job_id} failed: {job.error}")
        return job.status in states and job

    return wait_until(reached, timeout=timeout, what=f"run #{job_id} to be {' or '.join(states)}")


def pair_on_screen(page) -> int:
    return int(page.inner_text("#review-pair-head").split("#")[1].split()[0])


def test_typed_values_are_what_is_queued_and_out_of_range_values_are_refused(browser, tmp_path):
    with demo_studio(browser, tmp_path / "typed.db", "--no-worker") as (studio, store, page, errors):
        demo = store.project("demo")

        type_into(page, "cfg-learning-rate", "0.0005")
        type_into(page, "cfg-rounds", "2")
        queue(page)  # at once: the form's synchronisation of the keystrokes may still be in flight
        (job,) = store.jobs(demo.id)
        cfg = parse_config(job.config_yaml)
        assert (cfg.learning_rate, cfg.rounds) == (0.0005, 2)
        assert "Queued run" in page.inner_text("#run-message")
        assert "0.0005" in page.inner_text("#run-message")
        page.get_by_text("Configuration of this run, exactly as queued").click()
        wait_until(lambda: "learning_rate: 0.0005" in page.inner_text("#run-config"), what="the queued YAML")

        # refuse a value, restore it and at once edit another field and queue, several times over, with no pause
        # anywhere: what is queued is what the form shows at the moment Queue is pressed
        refusals = (
            ("cfg-learning-rate", "50", "Learning rate (learning_rate)"),
            ("cfg-epochs", "-1", "Seed epochs (epochs)"),
            ("cfg-rounds", "0", "Rounds (rounds)"),
        )
        typed = {"cfg-learning-rate": "0.0005", "cfg-epochs": "3", "cfg-rounds": "2"}
        queued = 1
        for attempt in range(3):
            for elem, text, named in refusals:
                page.get_by_role("tab", name="Project").click()
                type_into(page, elem, text)
                message = queue(page)
                assert "Not queued" in message and named in message, (attempt, message)
                assert len(store.jobs(demo.id)) == queued  # nothing queued
                page.get_by_role("tab", name="Project").click()
                type_into(page, elem, typed[elem])  # restored
                following = refusals[(refusals.index((elem, text, named)) + 1) % len(refusals)][0]
                typed[following] = {
                    "cfg-learning-rate": f"0.000{attempt + 2}",
                    "cfg-epochs": str(attempt + 4),
                    "cfg-rounds": str(attempt + 3),
                }[following]
                type_into(page, following, typed[following])  # and at once another field
                message = queue(page)
                assert "Queued run" in message, (attempt, elem, message)
                queued += 1
                job = store.jobs(demo.id)[-1]
                cfg = parse_config(job.config_yaml)
                assert (cfg.learning_rate, cfg.epochs, cfg.rounds) == (
                    float(typed["cfg-learning-rate"]),
                    int(typed["cfg-epochs"]),
                    int(typed["cfg-rounds"]),
                ), (attempt, elem, typed)
        assert errors == []


def test_guidelines_sit_beside_the_pair_survive_a_reload_and_undo_reverts_a_whole_bulk_accept(browser, tmp_path):
    from tests.test_studio_api import insert_pairs

    with demo_studio(browser, tmp_path / "guide.db", "--no-worker") as (studio, store, page, errors):
        job_id, ids = insert_pairs(studio.db, "demo", n=20)
        page.get_by_role("tab", name="Review").click()
        page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=30_000)
        assert "No annotation guidelines" in page.inner_text("#review-guidelines")

        # set the project's guidelines: they show beside the pair at once, rendered as Markdown
        page.get_by_text("Edit guidelines").click()
        field(page, "review-guidelines-edit").fill("Prefer the answer that **names the animal** first.")
        page.click("#review-guidelines-save")
        wait_until(lambda: "names the animal" in page.inner_text("#review-guidelines"), what="the guidelines")
        assert page.locator("#review-guidelines strong", has_text="names the animal").count() == 1
        assert store.project("demo").guidelines == "Prefer the answer that **names the animal** first."
        guide, pair_box = (page.locator(sel).bounding_box() for sel in ("#review-guidelines", "#review-answer-b"))
        assert guide["x"] > pair_box["x"] + pair_box["width"] - 1  # beside the answers, to their right

        # a reload keeps them (they live in the database, not in the page)
        page.reload()
        page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=30_000)
        page.get_by_role("tab", name="Review").click()
        page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=30_000)
        wait_until(lambda: "names the animal" in page.inner_text("#review-guidelines"), what="the kept guidelines")

        # bulk-accept the top half, then one press of Undo reverts every pair of it
        before = {p.id: (p.label, p.label_source) for p in store.pairs(job_id)}
        page.get_by_text("Accept self labels in bulk").click()
        page.click("#review-bulk")
        wait_until(lambda: "Accepted" in page.inner_text("#review-message"), what="the bulk accept")
        accepted = [p.id for p in store.pairs(job_id) if p.label_source == "accepted"]
        assert len(accepted) >= 8
        page.click("#review-undo")
        wait_until(lambda: "Undone" in page.inner_text("#review-message"), what="the undo")
        assert f"bulk accept of {len(accepted)} pairs" in page.inner_text("#review-message")
        assert {p.id: (p.label, p.label_source) for p in store.pairs(job_id)} == before
        assert len([e for e in store.label_events() if e.undoes is not None]) == len(accepted)
        assert errors == []


def test_newcomer_walk_demo_run_review_and_export(browser, tmp_path, mini_world):
    studio = start_studio(tmp_path / "walk.db", env={"SPA_DEMO_DIR": str(mini_world.root)})
    store = Store(studio.db)
    try:
        page, errors = open_studio(browser, studio)
        wait_until(lambda: "demo" in page.inner_text("#project-counts"), what="the demo project")
        demo = store.project("demo")

        # the demo project's configuration on the mini world (the full one takes minutes to build): its model
        # folder and data files typed into the form
        type_into(page, "cfg-model", str(mini_world.model_dir))
        for elem, name in (
            ("cfg-seed-data", "seed.jsonl"),
            ("cfg-prompt-pool", "pool.jsonl"),
            ("cfg-eval-data", "eval.jsonl"),
        ):
            type_into(page, elem, str(mini_world.root / name))
        # change the learning rate and the rounds, keep the run small, pause for review after judging
        type_into(page, "cfg-learning-rate", "0.0003")
        type_into(page, "cfg-rounds", "1")
        type_into(page, "cfg-prompts-per-round", "24")
        type_into(page, "cfg-epochs", "2")
        page.locator("#cfg-review-gate input[type=checkbox]").check()
        queue(page)
        (job,) = store.jobs(demo.id)
        cfg = parse_config(job.config_yaml)
        assert (cfg.learning_rate, cfg.rounds, cfg.prompts_per_round, cfg.epochs, cfg.review_gate) == (
            0.0003,
            1,
            24,
            2,
            True,
        )

        # the run pauses at its review gate, its stage shown on the Run tab
        wait_for_status(store, job.id, ("paused",))
        wait_until(lambda: "paused" in page.inner_text("#run-progress"), what="the paused run on the Run tab")

        # review: correct one label, write a better answer for the next, label and undo a third
        page.get_by_role("tab", name="Review").click()
        page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=20_000)
        assert "0 reviewed" in page.inner_text("#review-progress")
        corrected = pair_on_screen(page)
        judge_pick = store.pair(corrected).judge_label
        page.locator("#review-page-info").click()
        page.keyboard.press("b" if judge_pick == "a" else "a")
        wait_until(lambda: store.pair(corrected).label_source == "human", what="the correction")
        assert store.pair(corrected).label != judge_pick
        wait_until(lambda: pair_on_screen(page) != corrected, what="the next pair")
        rewritten = pair_on_screen(page)
        page.fill("#review-better textarea", "WRITTEN BY A PERSON")
        page.click("#review-save-better")
        wait_until(lambda: store.pair(rewritten).human_response == "WRITTEN BY A PERSON", what="the written answer")
        wait_until(lambda: pair_on_screen(page) != rewritten, what="the pair after the rewrite")
        third = pair_on_screen(page)
        page.locator("#review-page-info").click()
        page.keyboard.press("t")
        wait_until(lambda: store.pair(third).label == "tie", what="the tie")
        page.keyboard.press("u")
        wait_until(lambda: store.pair(third).label_source == "self", what="the undo")
        wait_until(lambda: "2 reviewed" in page.inner_text("#review-progress"), what="the reviewed count")

        # bulk-accept the top half of the round, by rank
        page.get_by_text("Accept self labels in bulk").click()
        page.click("#review-bulk")
        wait_until(lambda: "Accepted" in page.inner_text("#review-message"), what="the bulk accept")
        pairs = store.pairs(job.id)
        accepted = [p for p in pairs if p.label_source == "accepted"]
        assert len(accepted) >= len(pairs) // 2 - 2 and accepted
        assert f"Accepted {len(accepted)}" in page.inner_text("#review-message")

        # export the dataset from the Export tab and read it back
        page.get_by_role("tab", name="Export").click()
        wait_until(lambda: field(page, "export-out").input_value().endswith("dataset"), what="the export tab opened")
        out = tmp_path / "exported"
        field(page, "export-out").fill(str(out))
        page.click("#export-button")
        page.wait_for_selector("#export-result :text('Dataset exported')", timeout=30_000)
        rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
        by_prompt = {r["prompt"][-1]["content"]: r for r in rows if r["round"] == 1}
        written = by_prompt[store.pair(rewritten).prompt[-1]["content"]]
        assert (
            written["chosen"] == [{"role": "assistant", "content": "WRITTEN BY A PERSON"}]
            or written["chosen"] == "WRITTEN BY A PERSON"
        )
        assert written["source"] == "human"
        fixed = store.pair(corrected)
        fixed_row = by_prompt[fixed.prompt[-1]["content"]]
        chosen_text = fixed.response_a if fixed.label == "a" else fixed.response_b
        assert fixed_row["source"] == "human" and chosen_text in json.dumps(fixed_row["chosen"])
        sources = sorted(r["source"] for r in rows if r["round"] == 1)
        assert sources.count("accepted") == len(accepted) and sources.count("human") == 2
        assert sources.count("self") == len(pairs) - len(accepted) - 2
        assert errors == []
    finally:
        store.close()
        stop_studio(studio)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_new_project_from_uploaded_files_runs_with_the_defaults(browser, tmp_path, mini_world):
    from engine.worlds.demo_world import load_jsonl

    seed = write_rows(tmp_path / "my_seed.jsonl", load_jsonl(mini_world.root / "seed.jsonl") * 1)
    pool = write_rows(tmp_path / "my_pool.jsonl", load_jsonl(mini_world.root / "pool.jsonl")[:12])
    evals = write_rows(tmp_path / "my_eval.jsonl", load_jsonl(mini_world.root / "eval.jsonl")[:6])
    studio = start_studio(tmp_path / "new.db", env={"SPA_DEMO_DIR": str(mini_world.root)})
    store = Store(studio.db)
    try:
        page, errors = open_studio(browser, studio)
        wait_until(lambda: "demo" in page.inner_text("#project-counts"), what="the demo project")
        field(page, "project-new").fill("my-first")
        page.click("#project-create")
        wait_until(lambda: "my-first" in page.inner_text("#project-counts"), what="the new project")
        # the form follows the new project: its own name, the demo model, no data files, valid as it stands
        wait_until(lambda: "✓ valid" in page.inner_text("#config-status"), what="a valid default configuration")
        assert field(page, "config-name").input_value() == "my-first"
        assert field(page, "cfg-model").input_value() == "demo:model"

        for role, path, n in (("seed", seed, len(load_jsonl(seed))), ("pool", pool, 12), ("eval", evals, 6)):
            page.get_by_label(role, exact=True).first.check()
            page.set_input_files("#import-file input[type=file]", str(path))
            page.wait_for_selector(f"#import-preview :text('{path.name}')", timeout=20_000)
            page.click("#import-button")
            page.wait_for_selector(f"#import-result :text('{role} rows into')", timeout=20_000)
            # visible from the moment they are imported
            wait_until(
                lambda: f"of **{n}**" in page.inner_text("#data-info") or f"of {n}" in page.inner_text("#data-info"),
                what=f"the imported {role} rows",
            )
            prompts = [row["prompt"][-1]["content"] for row in load_jsonl(path)]
            wait_until(lambda: all(p in page.inner_text("#data-table") for p in prompts), what=f"the {role} rows")
        proj = store.project("my-first")
        assert [store.count_examples(proj.id, r) for r in ("seed", "pool", "eval")] == [len(load_jsonl(seed)), 12, 6]

        page.reload()  # the defaults now size the rounds from the imported pool
        page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=30_000)
        wait_until(lambda: "my-first" in page.inner_text("#project-counts"), what="the project after a reload")
        wait_until(lambda: field(page, "cfg-prompts-per-round").input_value() == "4", what="rounds sized by the pool")
        # a model from a local folder (demo:model would build the full demo world first, minutes); one round of
        # the default three keeps the test short (the defaults as they stand are queued in test_studio_labels)
        type_into(page, "cfg-model", str(mini_world.model_dir))
        type_into(page, "cfg-rounds", "1")
        message = queue(page)
        assert "Queued run" in message, message
        (job,) = store.jobs(proj.id)
        cfg = parse_config(job.config_yaml)
        assert (cfg.project, cfg.model, cfg.prompt_pool, cfg.prompts_per_round, cfg.rounds) == (
            "my-first",
            str(mini_world.model_dir),
            "",
            4,
            1,
        )
        wait_for_status(store, job.id, ("done",))
        wait_until(lambda: "done" in page.inner_text("#run-progress"), what="the finished run on the Run tab")
        assert {p.round for p in store.pairs(job.id)} == {1} and len(store.pairs(job.id)) >= 2
        assert errors == []
    finally:
        store.close()
        stop_studio(studio)
