"""Two people in two Chromium sessions of one studio, signed in through Gradio's login page: each labels on the
Review tab, the pair view and the table say who labelled what, and one person's "u" never reverts the other's
label."""

from __future__ import annotations

import pytest

from storage import Store
from tests.browser import wait_until
from tests.test_studio_api import insert_pairs, start_studio, stop_studio

pytestmark = pytest.mark.browser
PEOPLE = {"ana": "alpha-pass", "ben": "beta-pass"}


def signed_in(browser, url: str, user: str):
    """A fresh browser context (its own cookies) signed in as `user` on the Review tab."""
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.goto(url)
    page.wait_for_selector("input[type=password]", timeout=30_000)
    page.fill("input[data-testid=textbox]", user)
    page.fill("input[type=password]", PEOPLE[user])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#project-select", timeout=30_000)
    wait_until(lambda: "demo" in page.inner_text("#project-counts"), what=f"{user}'s studio to open the demo project")
    page.get_by_role("tab", name="Review").click()
    page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=20_000)
    page.locator("#review-page-info").click()  # focus off any text field: the keys label
    return page


def current_pair(page) -> int:
    return int(page.inner_text("#review-pair-head").split("#")[1].split()[0])


def test_two_people_label_see_who_labelled_and_undo_only_their_own(browser, tmp_path):
    auth = [arg for user, password in PEOPLE.items() for arg in ("--auth", f"{user}:{password}")]
    studio = start_studio(tmp_path / "people.db", "--no-worker", *auth)
    store = Store(studio.db)
    try:
        insert_pairs(studio.db, "demo", n=30)
        ana = signed_in(browser, studio.url, "ana")
        ana_pair = current_pair(ana)
        ana.keyboard.press("f")
        wait_until(lambda: store.pair(ana_pair).label_source == "human", what="ana's flip")
        wait_until(lambda: current_pair(ana) != ana_pair, what="ana's next pair")

        ben = signed_in(browser, studio.url, "ben")
        ben_pair = current_pair(ben)
        assert ben_pair != ana_pair  # ana's pair lost its flag and left the front of the queue
        ben.keyboard.press("t")
        wait_until(lambda: store.pair(ben_pair).label == "tie", what="ben's tie")
        wait_until(lambda: current_pair(ben) != ben_pair, what="ben's next pair")
        assert [e.actor for e in store.label_events(ana_pair)] == ["ana"]
        assert [e.actor for e in store.label_events(ben_pair)] == ["ben"]

        # the pair view names who labelled the pair; the table's "by" column names both people
        ben.keyboard.press("p")
        wait_until(lambda: "by ben" in ben.inner_text("#review-pair-head"), what="ben's pair, labelled by him")
        assert current_pair(ben) == ben_pair
        assert "ben" in ben.inner_text("#review-history")
        ana.keyboard.press("p")
        wait_until(lambda: "by ana" in ana.inner_text("#review-pair-head"), what="ana's pair, labelled by her")
        assert current_pair(ana) == ana_pair
        table = ana.locator("#review-table")
        assert table.get_by_role("columnheader", name="by").count() == 1
        wait_until(lambda: "ben" in table.inner_text() and "ana" in table.inner_text(), what="both names in the table")

        # ana's "u" reverts her flip and leaves ben's tie alone; then ben's own "u" reverts his
        ana.keyboard.press("u")
        wait_until(lambda: store.pair(ana_pair).label_source == "self", what="ana's undo")
        wait_until(lambda: "Undone" in ana.inner_text("#review-message"), what="ana's undo message")
        tied = store.pair(ben_pair)
        assert (tied.label, tied.label_source) == ("tie", "human")
        ana.keyboard.press("u")
        wait_until(lambda: "nothing to undo" in ana.inner_text("#review-message"), what="ana has nothing left")
        assert store.pair(ben_pair).label == "tie"
        ben.keyboard.press("u")
        wait_until(lambda: store.pair(ben_pair).label_source == "self", what="ben's undo")
        actors = [(e.pair_id, e.actor, e.undoes is not None) for e in store.label_events()]
        assert actors == [
            (ana_pair, "ana", False),
            (ben_pair, "ben", False),
            (ana_pair, "ana", True),
            (ben_pair, "ben", True),
        ]
    finally:
        store.close()
        stop_studio(studio)
