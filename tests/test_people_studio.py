"""Two people on one live studio (`launch.py studio --auth ann:… --auth bob:…`), each through their own signed-in
gradio_client: a round split between them with overlap 1, each one's own queue (without the other's answers) and
progress, their labels under their own names, their agreement through the API (n, raw agreement, Cohen's κ, each
against the self-judge) and as the Insight tab's table, and the training label where they disagree."""

from __future__ import annotations

import pytest

from app.agreement_view import AGREEMENT_COLUMNS, agreement_view
from storage import Store
from tests.test_studio_api import insert_pairs, start_studio, stop_studio

ACCOUNTS = {"ann": "ann-secret-1", "bob": "bob-secret-2"}
ANN = ["a", "a", "b", "a", "tie", "a"]  # round 1's six pairs, in id order; the judge said a on every one
BOB = ["a", "b", "b", "a", "a", "a"]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("people_studio")
    auth = [arg for user, password in ACCOUNTS.items() for arg in ("--auth", f"{user}:{password}")]
    s = start_studio(tmp / "studio.db", "--no-worker", *auth)
    yield s
    stop_studio(s)


@pytest.fixture(scope="module")
def people(studio):
    from gradio_client import Client

    return {user: Client(studio.url, auth=(user, password), verbose=False) for user, password in ACCOUNTS.items()}


def test_two_signed_in_people_split_a_round_label_it_and_read_their_agreement(studio, people):
    from gradio_client.exceptions import AppError

    job_id, ids = insert_pairs(studio.db, "p", n=12)
    round_one = ids[0::2]  # insert_pairs alternates rounds 1 and 2
    ann, bob = people["ann"], people["bob"]
    assert ann.predict(api_name="/whoami")["person"] == "ann"

    # bad input is refused with what is wrong, and changes nothing
    with pytest.raises(AppError, match="unknown person 'zed'"):
        ann.predict("p", 1, ["ann", "zed"], 0, api_name="/assign_review")
    with pytest.raises(AppError, match="overlap 1 gives each pair to 2 people: name at least 2"):
        ann.predict("p", 1, ["ann"], 1, api_name="/assign_review")
    with pytest.raises(AppError, match="has no judged pairs in round 9"):
        ann.predict("p", 9, ["ann", "bob"], 1, api_name="/assign_review")
    assert ann.predict("p", True, api_name="/review_progress") == []

    split = ann.predict("p", 1, ["ann", "bob"], 1, api_name="/assign_review")
    assert (split["job_id"], split["pairs"], split["people"]) == (job_id, 6, {"ann": 6, "bob": 6})

    def mine(client, todo=False) -> dict:
        return client.predict(
            "p", 0, 50, None, None, None, None, None, "", "newest", None, True, todo, api_name="/review_page"
        )

    assert sorted(mine(ann)["pair_ids"]) == round_one and sorted(mine(bob)["pair_ids"]) == round_one
    for pair_id, label in zip(round_one, ANN):
        assert ann.predict(pair_id, label, api_name="/set_label")["event"]["actor"] == "ann"
    # bob's own queue does not show ann's answers: the judge's label (self), and nobody as its author
    page = mine(bob, todo=True)
    rows = {r[0]: dict(zip(page["columns"], r)) for r in page["rows"]}
    assert sorted(rows) == round_one and {(r["label"], r["source"], r["by"]) for r in rows.values()} == {
        ("a", "self", "")
    }
    for pair_id, label in zip(round_one, BOB):
        assert bob.predict(pair_id, label, api_name="/set_label")["event"]["actor"] == "bob"
    assert mine(bob, todo=True)["pair_ids"] == []
    progress = bob.predict("p", True, api_name="/review_progress")
    assert [(r["person"], r["round"], r["assigned"], r["labelled"], r["remaining"]) for r in progress] == [
        ("bob", 1, 6, 6, 0)
    ]

    seen = ann.predict("p", None, None, api_name="/reviewer_agreement")
    assert seen["people"] == ["ann", "bob"] and seen["shared"] == 6 and seen["alpha"] is None
    [both] = seen["pairwise"]
    # same answer on pairs 1, 3, 4, 6: 4/6. ann a 4, b 1, tie 1; bob a 4, b 2: p_e = (16 + 2) / 36 = 1/2;
    # κ = (2/3 − 1/2) / (1 − 1/2) = 1/3
    assert (both["first"], both["second"], both["n"]) == ("ann", "bob", 6)
    assert both["agree"] == pytest.approx(4 / 6) and both["kappa"] == pytest.approx(1 / 3)
    # against the judge's a: ann decided 5 (one tie apart), 4 of them a; bob 6, 4 of them a
    assert (seen["with_judge"]["ann"]["n"], seen["with_judge"]["ann"]["ties"]) == (5, 1)
    assert seen["with_judge"]["ann"]["agree"] == pytest.approx(0.8)
    assert seen["with_judge"]["bob"]["agree"] == pytest.approx(4 / 6)

    # where they disagree (a against b, tie against a) the pair is left out of training; where they agree it trains
    store = Store(studio.db)
    try:
        trained = {p.id: p.label for p in store.as_trained(store.pairs(job_id, 1))}
    finally:
        store.close()
    assert trained == {round_one[0]: "a", round_one[2]: "b", round_one[3]: "a", round_one[5]: "a"}

    # the Insight tab's table of the same
    frame, info = agreement_view(str(studio.db), "p", None)
    assert list(frame.columns) == AGREEMENT_COLUMNS
    assert frame.values.tolist() == [
        ["ann · bob", 6, "67%", "0.333"],
        ["ann · self-judge", "5 (1 tie, 0 both bad apart)", "80% (38%–96%)", "–"],
        ["bob · self-judge", "6", "67% (30%–90%)", "–"],
    ]
    assert info == "6 pairs labelled by two or more people · α needs three or more people"
