"""A seed built from prompts alone, in a real browser (Debian's chromium through Playwright) with a real worker on a
mini demo world: upload 5 prompts as the seed, sample 4 answers each from the Project tab, rank every prompt in
Review ▸ Seed by keys alone (two presses per ranked prompt: the best's digit, then the worst's), undo one by key,
run the seed round, and find the ranked pairs in the seed view's table and in the dataset export, with the Export
tab's ordered-pairs option every ordered pair."""

from __future__ import annotations

import json

import pytest

from storage import Store
from tests.browser import wait_until
from tests.test_studio_api import start_studio, stop_studio
from tests.test_studio_walks import field, open_studio, queue, wait_for_status, write_rows

pytestmark = pytest.mark.browser
CONFIG = (
    "model: {model}\nprompt_pool: {pool}\nrounds: 1\nprompts_per_round: 4\nepochs: 1\n"
    "generation:\n  temperature: 1.0\n  max_new_tokens: 16\n"
)


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("seed_world"), size=WorldSize.mini(), progress=lambda *a: None)


def shown_example(page) -> int | None:
    value = page.locator("#seed-head [data-example]").get_attribute("data-example")
    return int(value) if value else None


def keys_for(store: Store, example_id: int) -> list[str]:
    """The keys a person presses for a prompt: the digits of its first and last answers of different text (best,
    then worst), or e when they all read the same."""
    answers = store.seed_answers(example_id)
    for i, first in enumerate(answers):
        for j in reversed(range(len(answers))):
            if first.text.strip() != answers[j].text.strip():
                return [str(i + 1), str(j + 1)]
    return ["e"]


def text(value) -> str:
    """An exported answer's text, whether the row is plain or conversational."""
    return value if isinstance(value, str) else value[-1]["content"]


def test_a_seed_from_prompts_ranked_by_keys_trains_the_seed_round_and_is_exported(browser, tmp_path, mini_world):
    from engine.worlds.demo_world import load_jsonl

    prompts = write_rows(
        tmp_path / "seed_prompts.jsonl", [{"prompt": row["prompt"]} for row in load_jsonl(mini_world.pool_file)[:5]]
    )
    studio = start_studio(tmp_path / "seed.db", env={"SPA_DEMO_DIR": str(mini_world.root)})
    store = Store(studio.db)
    try:
        page, errors = open_studio(browser, studio)
        wait_until(lambda: "demo" in page.inner_text("#project-counts"), what="the demo project")
        field(page, "project-new").fill("seedy")
        page.click("#project-create")
        wait_until(lambda: "seedy" in page.inner_text("#project-counts"), what="the new project")

        # a seed of prompts alone: the Project tab says what they need, with the button that samples them
        page.set_input_files("#import-file input[type=file]", str(prompts))
        page.wait_for_selector("#import-preview :text('seed_prompts.jsonl')", timeout=20_000)
        page.click("#import-button")
        page.wait_for_selector("#import-result :text('seed rows into')", timeout=20_000)
        wait_until(lambda: "5 seed prompts: 0 ranked" in page.inner_text("#seed-status"), what="the seed status")
        assert "Review ▸ Seed" in page.inner_text("#seed-status")

        # the project's model and pool (the mini world) and one small round, opened from a YAML file and saved, so
        # sampling uses the model the run starts from (short answers keep the test short)
        config = tmp_path / "seedy.yaml"
        config.write_text(CONFIG.format(model=mini_world.model_dir, pool=mini_world.pool_file), encoding="utf-8")
        page.set_input_files("input[type=file][accept*='.yaml']", str(config))
        wait_until(lambda: field(page, "cfg-model").input_value() == str(mini_world.model_dir), what="the YAML")
        page.click("#config-save")
        wait_until(lambda: "Saved as configuration" in page.inner_text("#config-status"), what="the saved config")

        page.click("#seed-sample")
        wait_until(lambda: "Queued job" in page.inner_text("#seed-sample-message"), what="the sampling job")
        project_id = store.project("seedy").id
        (job,) = store.jobs(project_id)
        assert job.kind == "seed-answers"
        wait_for_status(store, job.id, ("done",), timeout=240)
        wait_until(lambda: "5 to rank" in page.inner_text("#seed-status"), timeout=30, what="answers to rank")
        assert [len(store.seed_answers(ex.id)) for ex in store.seed_prompts(project_id)] == [4] * 5

        # Review ▸ Seed: rank every prompt by keys, undo one by key and rank it again
        page.get_by_role("tab", name="Review").click()
        page.get_by_role("tab", name="Seed").click()
        wait_until(lambda: shown_example(page), what="the first seed prompt")
        assert all(page.locator(f"#seed-slot-{k}").is_visible() for k in range(1, 5))
        assert not page.locator("#seed-slot-5").is_visible()
        assert "tokens" in page.inner_text("#seed-slot-1") and "logp" in page.inner_text("#seed-slot-1")
        presses: dict[int, int] = {}
        undone = by_mouse = written = None
        while (example := shown_example(page)) is not None:
            keys = keys_for(store, example)
            if undone is not None and keys != ["e"] and by_mouse is None:
                # the buttons instead of the keys: the worst first, then the best, which saves
                page.click(f"#seed-worst-{keys[1]}")
                page.click(f"#seed-best-{keys[0]}")
                by_mouse = example
            elif by_mouse is not None and keys != ["e"] and written is None:
                # a better answer of one's own: the best, over the worst chosen beside it
                page.fill("#seed-better textarea", "A PERSON'S BETTER ANSWER")
                page.locator("#seed-better-worst label", has_text=keys[1]).click()
                page.click("#seed-save-better")
                written = example
            else:
                page.locator("#seed-progress").click()  # the page, not a text box, has the keys
                for key in keys:
                    page.keyboard.press(key)
                presses[example] = presses.get(example, 0) + len(keys)
            wait_until(lambda: store.seed_ranking(example) is not None, what=f"the decision on prompt {example}")
            wait_until(lambda: shown_example(page) != example, what=f"the prompt after {example}")
            if undone is None and keys != ["e"]:
                page.keyboard.press("u")  # the person's own last decision, undone: the prompt is shown again
                wait_until(lambda: store.seed_ranking(example) is None, what="the undo")
                wait_until(lambda: shown_example(page) == example, what="the undone prompt shown again")
                undone = example
        assert undone is not None and written is not None
        assert "Every seed prompt with answers is decided" in page.inner_text("#seed-head")
        progress = store.seed_progress(project_id)
        assert progress.unranked == 0 and progress.ranked >= 1 and progress.ranked + progress.equal == 5
        ranked = {
            r.example_id: r for r in store.seed_rankings(project_id) if r.undone_at is None and r.status == "ranked"
        }
        assert {r.actor for r in ranked.values()} == {"studio"}
        if by_mouse is not None:
            mouse = store.seed_answers(by_mouse)
            keys = keys_for(store, by_mouse)
            assert (ranked[by_mouse].best_answer_id, ranked[by_mouse].worst_answer_id) == (
                mouse[int(keys[0]) - 1].id,
                mouse[int(keys[1]) - 1].id,
            )
        if written is not None:
            mine = store.seed_answers(written)[-1]
            assert (mine.text, mine.source, ranked[written].best_answer_id) == (
                "A PERSON'S BETTER ANSWER",
                "human",
                mine.id,
            )
        # two key presses per prompt ranked by keys (the one undone was ranked again with the buttons)
        assert by_mouse == undone and {presses[example] for example in ranked if example in presses} == {2}

        # the seed round trains on them: one small run, queued from the Run tab
        message = queue(page)
        assert "Queued run" in message, message
        run = store.jobs(project_id)[-1]
        wait_for_status(store, run.id, ("done",), timeout=300)
        assert any(f"seed DPO on {progress.ranked} pairs" in e["message"] for e in store.events(run.id, limit=500))

        # the ranked pairs in Review ▸ Seed's table ...
        pairs = store.seed_pairs(project_id)
        page.get_by_role("tab", name="Review").click()
        page.get_by_role("tab", name="Seed").click()
        page.click("#seed-refresh")
        wait_until(
            lambda: all(p.chosen.strip()[:30] in page.inner_text("#seed-pairs") for p in pairs),
            what="the ranked pairs in the seed view's table",
        )
        assert len(pairs) == progress.ranked

        # ... and in the dataset export: one pair per ranked prompt; with the option, every ordered pair
        page.get_by_role("tab", name="Export").click()
        wait_until(lambda: field(page, "export-out").input_value().endswith("dataset"), what="the export tab")
        for name, ordered in (("pairs", False), ("ordered", True)):
            out = tmp_path / name
            field(page, "export-out").fill(str(out))
            if ordered:
                page.locator("#export-seed-ordered input[type=checkbox]").check()
            page.click("#export-button")
            wait_until(lambda: (out / "train.jsonl").is_file(), what=f"the {name} export")
            rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
            exported = sorted(
                (text(r["chosen"]), text(r["rejected"])) for r in rows if r["round"] == 0 and r["source"] == "human"
            )
            expected = store.seed_ordered_pairs(project_id) if ordered else pairs
            assert exported == sorted((p.chosen, p.rejected) for p in expected if p.label_source == "human")
            assert len(exported) == (
                sum(2 * len(store.seed_answers(e)) - 3 for e in ranked) if ordered else len(ranked)
            )
        assert errors == []
    finally:
        store.close()
        stop_studio(studio)
