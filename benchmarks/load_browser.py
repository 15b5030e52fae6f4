"""benchmarks/load.py's Chromium phase: two people, each in a browser context of their own signed in through
Gradio's login page, label the front of the Review tab's queue with its keys (a, b) at the same moments and undo
their own last label with "u" after every UNDO_EVERY-th label.

A key's latency is measured in the page: from the keydown to the moment the Review tab's message shows the answer
(a MutationObserver stamps each new message), so the order in which this script waits for the two pages does not
enter the figure. The two people see one queue and may label the same pair: nothing is lost when every key press
wrote exactly one audit event under its person, every pair's label is its last event's, and no undo event
reverted another person's event."""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.load_tally import UNDO_EVERY, Check, Phase, Tally, pair_states
from storage import Store
from tests.browser import chromium, wait_until

ANSWER_TIMEOUT_S = 120
# stamps every key press and every new text of the Review tab's message, in the page's clock
INSTRUMENT_JS = """(() => {
  window.spaKeys = []; window.spaShown = []; window.spaLast = '';
  document.addEventListener('keydown', () => window.spaKeys.push(performance.now()), true);
  new MutationObserver(() => {
    const m = document.querySelector('#review-message');
    const text = m ? m.innerText.trim() : '';
    if (text && text !== window.spaLast) { window.spaLast = text; window.spaShown.push(performance.now()); }
  }).observe(document, {subtree: true, childList: true, characterData: true});
})();"""


def signed_in(browser, url: str, name: str, password: str):
    """A fresh browser context (its own cookies) signed in as `name`, on the Review tab, focus off any field."""
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.add_init_script(INSTRUMENT_JS)
    page.goto(url)
    page.wait_for_selector("input[type=password]", timeout=60_000)
    page.fill("input[data-testid=textbox]", name)
    page.fill("input[type=password]", password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#project-select", timeout=60_000)
    wait_until(lambda: "bench" in page.inner_text("#project-counts"), 60, f"{name}'s studio to open the project")
    page.get_by_role("tab", name="Review").click()
    page.wait_for_selector("#review-pair-head :text('Pair #')", timeout=60_000)
    page.locator("#review-page-info").click()
    return page


def press_all(pages: list, keys: list[str]) -> None:
    """Each page its key, at (nearly) the same moment; then wait until every page has shown its answer."""
    shown = [page.evaluate("window.spaShown.length") for page in pages]
    for page, key in zip(pages, keys):
        page.keyboard.press(key)
    for page, count in zip(pages, shown):
        page.wait_for_function(f"window.spaShown.length > {count}", timeout=ANSWER_TIMEOUT_S * 1000)


def latencies(page, undo_keys: set[int]) -> tuple[list[float], list[float]]:
    """Each key's ms from keydown to its answer (the first message after it), split into labels and undos."""
    keys, shown = page.evaluate("[window.spaKeys, window.spaShown]")
    labels, undos = [], []
    for i, at in enumerate(keys):
        answer = next((s for s in shown if s > at), None)
        if answer is not None:
            (undos if i in undo_keys else labels).append(answer - at)
    return labels, undos


def check_browser(db: Path, first_event: int, labels: dict[str, int]) -> Check:
    """Lost: a label key without its audit event under its person, or a pair whose label is not its last event's.
    An undo may rightly revert nothing (the other person labelled the pair since): undos are checked for crossing
    people only."""
    store = Store(db)
    try:
        events = [e for e in store.label_events() if e.id > first_event]
        by_id = {e.id: e for e in store.label_events()}
        last = {e.pair_id: e for e in events}
        stale = sum(
            (store.pair(i).label, store.pair(i).label_source) != (e.new_label, e.new_source) for i, e in last.items()
        )
    finally:
        store.close()
    written = {name: sum(e.actor == name and e.undoes is None for e in events) for name in labels}
    missing = sum(abs(labels[name] - written[name]) for name in labels)
    crossed = sum(e.undoes is not None and by_id[e.undoes].actor != e.actor for e in events)
    return Check(len(events), stale + missing, crossed)


def browser_phase(url: str, db: Path, people: list[tuple[str, str]], writes: int, studio) -> Phase:
    tally = Tally()
    with chromium() as browser:
        pages = [signed_in(browser, url, name, password) for name, password in people]
        _, first_event = pair_states(db, [])
        for page in pages:
            page.evaluate("() => { window.spaKeys = []; window.spaShown = []; }")
        load, cpu, t = os.getloadavg(), sum(studio.cpu_times()[:2]), time.monotonic()
        undo_keys: set[int] = set()
        for n in range(writes):
            press_all(pages, ["ab"[(n + k) % 2] for k in range(len(pages))])
            tally.labels += len(pages)
            if n % UNDO_EVERY == UNDO_EVERY - 1:
                undo_keys.add(len(undo_keys) + n + 1)  # the key index of this undo on every page
                press_all(pages, ["u"] * len(pages))
                tally.undos += len(pages)
        seconds, studio_cpu = time.monotonic() - t, sum(studio.cpu_times()[:2]) - cpu
        for page in pages:
            labels, undos = latencies(page, undo_keys)
            tally.ms["label"] += labels
            tally.ms["undo"] += undos
    done = check_browser(db, first_event, {name: tally.labels // len(people) for name, _ in people})
    calls = tally.labels + tally.undos
    return Phase(f"{len(people)} people, Chromium", len(people), seconds, load, tally, done, studio_cpu, calls)
