"""Two people in two Chromium pages (two signed-in sessions of one studio): ann splits round 1 between them with
overlap 1 on the Review tab, each labels their own queue with the keyboard (bob without seeing ann's answers),
every label carries its person's name, and the Insight tab shows their agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Store
from tests.browser import wait_until
from tests.test_studio_api import insert_pairs, start_studio, stop_studio

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
ACCOUNTS = {"ann": "ann-secret-1", "bob": "bob-secret-2"}

pytestmark = pytest.mark.browser


def signed_in(browser, url: str, user: str):
    """A page of its own browser context (its own session cookie), signed in as `user`."""
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.goto(url)
    page.locator("input[type=text]").fill(user)
    page.locator("input[type=password]").fill(ACCOUNTS[user])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=60_000)
    page.get_by_role("tab", name="Review").click()
    page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=30_000)
    return page


def choose(page, elem: str, option: str) -> None:
    page.click(f"#{elem} input")
    page.get_by_role("option", name=option, exact=True).click()


def shown_pair(page) -> int:
    return int(page.inner_text("#review-pair-head").split("#")[1].split()[0])


def label_queue(page, store: Store, person: str, keys: list[str]) -> dict[int, str]:
    """Press each key on the pair shown, waiting for the label to be stored under `person`; pair id → label."""
    given = {}
    page.locator("#review-page-info").click()  # keys go to the page, not to a text field
    for key in keys:
        pair_id = shown_pair(page)
        page.keyboard.press(key)
        wait_until(lambda: any(e.actor == person for e in store.label_events(pair_id)), what=f"{person}'s {key}")
        wait_until(lambda: f"Pair #{pair_id}:" in page.inner_text("#review-message"), what="the confirmation")
        given[pair_id] = key
    return given


def test_two_people_label_a_round_split_with_overlap_one_and_see_their_agreement(browser, tmp_path):
    auth = [arg for user, password in ACCOUNTS.items() for arg in ("--auth", f"{user}:{password}")]
    studio = start_studio(tmp_path / "people.db", "--no-worker", *auth)
    store = Store(studio.db)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        job_id, ids = insert_pairs(studio.db, "demo", n=8)
        round_one = ids[0::2]  # four pairs; the judge said a on each
        ann = signed_in(browser, studio.url, "ann")
        bob = signed_in(browser, studio.url, "bob")
        errors = []
        for page in (ann, bob):
            page.on("pageerror", lambda e: errors.append(str(e)))

        # ann splits round 1 between the two of them, overlap 1 (the panel's people are the accounts)
        choose(ann, "review-round", "1")
        ann.get_by_role("button", name="Split a round among people").click()
        assert ann.locator("#assign-people textarea, #assign-people input").first.input_value() == "ann, bob"
        ann.click("#assign-button")
        wait_until(lambda: "4 pairs, each to 2 of 2 people" in ann.inner_text("#assign-info"), what="the split")
        assert store.round_assignment(job_id, 1) == {pair_id: ["ann", "bob"] for pair_id in round_one}

        choose(ann, "review-queue", "my queue")
        wait_until(lambda: "of 4" in ann.inner_text("#review-page-info"), what="ann's queue")
        by_ann = label_queue(ann, store, "ann", ["a", "a", "b", "a"])
        assert sorted(by_ann) == round_one
        wait_until(lambda: "4 of 4 labelled" in ann.inner_text("#review-progress"), what="ann's progress")

        # bob's queue of what he has not labelled: the judge's label, never ann's b, and nobody's name beside it
        choose(bob, "review-queue", "my queue, not labelled by me yet")
        wait_until(lambda: "of 4" in bob.inner_text("#review-page-info"), what="bob's queue")
        table = bob.inner_text("#review-table")
        assert "ann" not in table and "human" not in table
        by_bob = label_queue(bob, store, "bob", ["a", "b", "b", "a"])
        assert sorted(by_bob) == round_one
        bob.screenshot(path=str(SHOTS / "people_review.png"), full_page=True)
        for pair_id in round_one:
            mine = {e.actor: e.new_label for e in store.label_events(pair_id)}
            assert mine == {"ann": by_ann[pair_id], "bob": by_bob[pair_id]}

        # the Insight tab: 3 of 4 the same; ann a 3 b 1, bob a 2 b 2: p_e = (6 + 2) / 16 = 1/2, κ = (3/4 − 1/2) / (1/2)
        ann.get_by_role("tab", name="Insight").click()
        wait_until(lambda: "ann · bob" in ann.inner_text("#insight-agreement"), timeout=30, what="the agreement")
        cells = [cell.strip() for cell in ann.inner_text("#insight-agreement").split("\n") if cell.strip()]
        at = cells.index("ann · bob")
        assert cells[at : at + 4] == ["ann · bob", "4", "75%", "0.500"], cells
        assert "4 pairs labelled by two or more people" in ann.inner_text("#insight-agreement-info")
        ann.screenshot(path=str(SHOTS / "people_insight.png"), full_page=True)
        assert errors == []
    finally:
        store.close()
        stop_studio(studio)
