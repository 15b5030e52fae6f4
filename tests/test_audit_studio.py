"""The blind audit through a running studio: the API's review page and pair hide the judge until the person has
answered in the audit order, /audit_estimate counts those answers and nothing else, and the Run tab warns in a real
browser while the interval includes 0.5."""

from __future__ import annotations

import pytest

from storage import Store
from tests.browser import wait_until
from tests.test_studio_api import insert_pairs, start_studio, stop_studio


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A studio without a worker, on a database whose demo project has a finished run with two judged rounds of 6
    pairs; round 1's audit sample is 4 of them, with the judge's labels a, b, a, b."""
    tmp = tmp_path_factory.mktemp("audit_studio")
    s = start_studio(tmp / "studio.db", "--no-worker")
    job, ids = insert_pairs(s.db, "demo", n=12)
    store = Store(s.db)
    round_1 = [p.id for p in store.pairs(job, 1)]
    s.sample = round_1[:4]
    for pair_id in s.sample[1::2]:
        store.update_pairs({pair_id: {"judge_label": "b", "label": "b"}})
    store.set_audit_sample(job, 1, s.sample)
    store.close()
    s.job = job
    yield s
    stop_studio(s)


def test_the_api_returns_the_estimate_of_audit_answers_and_ignores_review_labels(client, studio):
    first, second, third, fourth = studio.sample  # judge: a, b, a, b
    page = client.predict("demo", 0, 20, 1, None, None, None, None, "", "audit", None, api_name="/review_page")
    assert page["pair_ids"] == studio.sample and sorted(page["blind"]) == sorted(studio.sample)
    assert {row[6] for row in page["rows"]} == {"blind"} and {row[3] for row in page["rows"]} == {""}
    blind = client.predict(first, "audit", api_name="/get_pair")
    assert blind["blind"] and blind["judge_label"] is None and blind["confidence"] is None and blind["events"] == []

    client.predict(first, "a", None, "", "audit", api_name="/set_label")  # agrees
    client.predict(second, "a", None, "", "audit", api_name="/set_label")  # disagrees
    client.predict(third, "both_bad", None, "", "audit", api_name="/set_label")
    client.predict(fourth, "b", None, "", "review", api_name="/set_label")  # the review queue: never counts
    estimate = client.predict("demo", None, 1, api_name="/audit_estimate")
    assert estimate["job_id"] == studio.job
    [row] = estimate["rounds"]
    assert (row["agree"], row["n"], row["ties"], row["both_bad"], row["answered"], row["sample"]) == (
        0.5,
        2,
        0,
        1,
        3,
        4,
    )
    assert row["covers_half"] and "not yet better than a coin" in estimate["warning"]
    assert client.predict("", studio.job, None, api_name="/audit_estimate")["rounds"] == [row]
    # answered pairs show the judge again; the one labelled in the review queue is still blind
    page = client.predict("demo", 0, 20, 1, None, None, None, None, "", "audit", None, api_name="/review_page")
    assert page["blind"] == [fourth]
    assert client.predict(first, "audit", api_name="/get_pair")["judge_label"] == "a"


@pytest.mark.browser
def test_the_run_tab_warns_while_the_interval_includes_half(browser, studio):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(studio.url)
    page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=60_000)
    wait_until(lambda: "demo" in page.inner_text("#project-counts"), timeout=60, what="the demo project to open")
    page.get_by_role("tab", name="Run").click()
    page.wait_for_selector("#run-audit-warning :text('not yet better than a coin on your labels')", timeout=30_000)
    assert "Label more audit pairs" in page.inner_text("#run-audit-warning")
    page.close()
