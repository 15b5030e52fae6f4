"""The run configuration's form in a real browser (issue 38): a person who clicks a field the moment it shows and
types must get what they typed, never the project's value written under (or next to) their keys when it
arrives a moment later. The page's fill is held back until a few seconds after the field shows (the browser's own
fetch of the page-load event is delayed), so the race the issue saw once on a fresh database happens every time."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml

from storage import Store
from tests.test_studio_api import start_studio, stop_studio

pytestmark = pytest.mark.browser

HOLD_MS = 3000  # how long the page-load event (and so the form's fill) is held back
FIELD = "#cfg-learning-rate input, #cfg-learning-rate textarea"
TYPED = "0.0005"


def load_event(url: str) -> int:
    """The index of the page-load event in the studio's config: the event whose answer fills the form."""
    with urllib.request.urlopen(url + "config", timeout=10) as r:
        config = json.load(r)
    (index,) = [i for i, d in enumerate(config["dependencies"]) if any(t[1] == "load" for t in d["targets"])]
    return index


def hold_fill_js(fn_index: int) -> str:
    """A page script that holds the browser's request for the page-load event until HOLD_MS after the field has
    shown (however long the page takes to draw), counting the holds."""
    return f"""(() => {{
  const original = window.fetch;
  window.spaHeld = 0;
  const fieldShown = () => new Promise((resolve) => {{
    const look = () => (document.querySelector({json.dumps(FIELD)}) ? resolve() : setTimeout(look, 20));
    look();
  }});
  window.fetch = async (input, init) => {{
    const url = typeof input === 'string' ? input : input.url;
    if (url.includes('/queue/join') && init && typeof init.body === 'string'
        && JSON.parse(init.body).fn_index === {fn_index}) {{
      window.spaHeld += 1;
      await fieldShown();
      await new Promise((resolve) => setTimeout(resolve, {HOLD_MS}));
    }}
    return original(input, init);
  }};
}})();"""


def test_a_value_typed_the_moment_the_field_shows_is_what_is_queued(browser, tmp_path):
    studio = start_studio(tmp_path / "form.db", "--no-worker")  # a fresh database: the demo project only
    store = Store(studio.db)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(hold_fill_js(load_event(studio.url)))
        page.goto(studio.url)
        box = page.locator(FIELD)
        box.wait_for(state="visible", timeout=60_000)
        # the first moment the field shows: its value has not arrived (the fill is being held back)
        editable_at_first_sight = box.is_editable()
        editor_at_first_sight = page.locator("#config-yaml [contenteditable=true]").count()  # no editor drawn yet
        assert page.evaluate("window.spaHeld") == 1 and box.input_value() == ""
        # a person clicks, selects all and types: the click lands as soon as the page lets it
        box.click(timeout=30_000)
        page.keyboard.press("Control+A")
        page.keyboard.type(TYPED)
        page.wait_for_timeout(HOLD_MS + 1000)  # any late fill would have landed by now
        shown = box.input_value()

        page.get_by_role("tab", name="Run").click()
        page.click("#queue-run")
        page.wait_for_selector("#run-message :text('Queued run')", timeout=20_000)
        (job,) = store.jobs(store.project("demo").id)
        queued = yaml.safe_load(job.config_yaml)
        assert (shown, queued["learning_rate"]) == (TYPED, float(TYPED)), job.config_yaml
        assert queued["model"] == "demo:model"  # the rest of the form is the project's configuration
        assert not editable_at_first_sight and not editor_at_first_sight  # nothing took keys before its value
        assert errors == []
    finally:
        store.close()
        stop_studio(studio)
