"""The studio in a real browser (Debian's chromium through Playwright): upload a file on the Project tab,
queue a run, label a pair on the Review tab with a keyboard shortcut, and keep a screenshot of every tab
under test-artifacts/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage import Store
from tests.browser import wait_until
from tests.test_studio_api import insert_pairs, start_studio, stop_studio, write_trl_jsonl

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser


def test_upload_queue_and_label_with_a_shortcut(browser, tmp_path):
    studio = start_studio(tmp_path / "browser.db", "--no-worker")
    store = Store(studio.db)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(studio.url)
        page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=30_000)
        wait_until(lambda: "demo" in page.inner_text("#project-counts"), what="the demo project to open")

        # Project tab: upload a seed file, read the preview, import it
        seed = write_trl_jsonl(tmp_path / "seed_pairs.jsonl", n=4)
        page.set_input_files("#import-file input[type=file]", str(seed))
        page.wait_for_selector("#import-preview :text('trl-standard-explicit')", timeout=20_000)
        assert "4" in page.inner_text("#import-preview")
        page.click("#import-button")
        page.wait_for_selector("#import-result :text('Imported')", timeout=20_000)
        demo = store.project("demo")
        assert store.count_examples(demo.id, "seed") == 4
        page.screenshot(path=str(SHOTS / "project.png"), full_page=True)

        # Run tab: queue the demo configuration shown in the editor
        page.get_by_role("tab", name="Run").click()
        page.click("#queue-run")
        page.wait_for_selector("#run-message :text('Queued run')", timeout=20_000)
        jobs = store.jobs(demo.id)
        assert [j.status for j in jobs] == ["queued"] and "model: demo:model" in jobs[0].config_yaml
        page.wait_for_selector("#run-progress :text('waiting for a worker')", timeout=10_000)
        page.screenshot(path=str(SHOTS / "run.png"), full_page=True)

        # Review tab: pairs written as a worker would; one key press labels the current pair
        insert_pairs(studio.db, "demo", n=30)
        page.get_by_role("tab", name="Review").click()
        head = page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=20_000)
        pair_id = int(head.inner_text().split("#")[1].split()[0])
        before = store.pair(pair_id)
        assert before.noisy and before.label_source == "self"  # flagged pairs come first

        page.fill("#review-search textarea, #review-search input", "f")  # typing must not label anything
        assert store.label_events(pair_id) == []
        page.fill("#review-search textarea, #review-search input", "")
        page.locator("#review-page-info").click()  # focus leaves the text field
        page.keyboard.press("f")
        after = wait_until(lambda: (p := store.pair(pair_id)).label_source == "human" and p, what="the flip")
        assert after.label == "b" and not after.noisy
        events = store.label_events(pair_id)
        assert [(e.old_label, e.new_label, e.new_source) for e in events] == [("a", "b", "human")]
        wait_until(lambda: f"#{pair_id}:" in page.inner_text("#review-message"), what="the confirmation")
        next_id = int(page.inner_text("#review-pair-head").split("#")[1].split()[0])
        assert next_id != pair_id  # moved on to the next pair
        page.keyboard.press("k")
        wait_until(lambda: store.pair(next_id).label_source == "human", what="the keep")
        page.screenshot(path=str(SHOTS / "review.png"), full_page=True)

        page.get_by_role("tab", name="Insight").click()
        page.wait_for_selector("#insight-summary :text('judged pairs')", timeout=20_000)
        time.sleep(1.5)  # let the charts draw
        page.screenshot(path=str(SHOTS / "insight.png"), full_page=True)

        page.get_by_role("tab", name="Export").click()
        page.wait_for_selector("#export-button", timeout=20_000)
        time.sleep(0.5)
        page.screenshot(path=str(SHOTS / "export.png"), full_page=True)
        assert errors == []
    finally:
        store.close()
        stop_studio(studio)
