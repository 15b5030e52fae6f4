"""Several people at one studio, as their scripts see it: a `launch.py studio` with a users file and a repeated
--auth, two gradio_client clients signed in as two people. Each label, decision and undo carries its person; an
undo never reverts the other's; the dataset export names both. A malformed users file stops the studio before
it listens."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app import security
from storage import Example, SeedAnswer, Store
from tests.test_studio_api import ROOT, _listening, clean_env, insert_pairs, start_studio, stop_studio

FAST = security.MIN_ITERATIONS
PEOPLE = {"ana": "alpha-pass", "ben": "beta:pass"}  # ben's password holds a colon: only the first one splits


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("people")
    users = tmp / "users.txt"
    users.write_text(f"# the team\n{security.hash_line('ana', PEOPLE['ana'], FAST)}\n", encoding="utf-8")
    s = start_studio(tmp / "studio.db", "--no-worker", "--users", str(users), "--auth", f"ben:{PEOPLE['ben']}")
    s.tmp = tmp
    yield s
    stop_studio(s)


@pytest.fixture(scope="module")
def people(studio):
    from gradio_client import Client

    return {name: Client(studio.url, auth=(name, password), verbose=False) for name, password in PEOPLE.items()}


def test_a_wrong_password_or_no_account_gets_nothing(studio):
    import httpx
    from gradio_client import Client

    for user, password in (("ana", PEOPLE["ben"]), ("carl", "alpha-pass"), ("ben", "beta")):
        with pytest.raises(ValueError, match="Could not login"):
            Client(studio.url, auth=(user, password), verbose=False)
    config = httpx.get(f"{studio.url}config", timeout=10)
    assert config.status_code == 401  # without signing in, not even the app's layout
    log = studio.db.with_suffix(".log").read_text()
    assert all(password not in log for password in PEOPLE.values())


def test_each_person_labels_and_undoes_only_their_own(studio, people):
    ana, ben = people["ana"], people["ben"]
    assert ana.predict(api_name="/whoami") == {"person": "ana", "people": ["ana", "ben"]}
    assert ben.predict(api_name="/whoami")["person"] == "ben"
    _, ids = insert_pairs(studio.db, "team", n=6)
    assert ana.predict(ids[0], "b", api_name="/set_label")["event"]["actor"] == "ana"
    assert ana.predict(ids[1], "flip", api_name="/set_label")["event"]["actor"] == "ana"
    assert ben.predict(ids[2], "b", api_name="/set_label")["event"]["actor"] == "ben"
    assert ben.predict(ids[0], "b", api_name="/set_label")["event"]["actor"] == "ben"  # the same label as ana's
    ana.predict(ids[3], "tie", api_name="/set_label")

    # ana's undos: her newest label, then the one before; pair 0 keeps ben's label, which came after hers
    assert ana.predict("team", api_name="/undo_last_label")["pairs"] == [ids[3]]
    assert ana.predict("team", api_name="/undo_last_label")["pairs"] == [ids[1]]
    undone = ana.predict("team", api_name="/undo_last_label")
    assert undone["pairs"] == [] and undone["kept"] == [ids[0]]
    pair = ben.predict(ids[0], api_name="/get_pair")
    assert (pair["label"], pair["label_source"], pair["labelled_by"]) == ("b", "human", "ben")
    assert [(e["actor"], e["new_label"]) for e in pair["events"]] == [("ana", "b"), ("ben", "b"), ("ana", "b")]
    assert ana.predict(ids[2], api_name="/get_pair")["labelled_by"] == "ben"  # ana's undos never reached it

    page = ana.predict("team", api_name="/review_page")
    by = dict(zip(page["pair_ids"], (row[page["columns"].index("by")] for row in page["rows"])))
    assert {i: by[i] for i in ids} == {ids[0]: "ben", ids[1]: "", ids[2]: "ben", ids[3]: "", ids[4]: "", ids[5]: ""}

    # ben's undo reverts his own newest (pair 0): back to the self label, not to ana's, which she took back
    assert ben.predict("team", api_name="/undo_last_label")["pairs"] == [ids[0]]
    assert ben.predict(ids[0], api_name="/get_pair")["label_source"] == "self"
    ana.predict(ids[4], "a", api_name="/set_label")
    accepted = ben.predict("team", 0.9, api_name="/bulk_accept")["accepted"]
    store = Store(studio.db)
    try:
        assert accepted > 0 and {e.actor for e in store.label_events() if e.new_source == "accepted"} == {"ben"}
        labelled = {(e.pair_id, e.actor) for e in store.label_events() if e.undoes is None}
        assert {actor for _, actor in labelled} == {"ana", "ben"}
        assert store.labelled_by(ids)[ids[2]] == "ben" and store.labelled_by(ids)[ids[4]] == "ana"
    finally:
        store.close()

    # the dataset export names both people beside each label in force
    from engine.data.export import ExportRequest, export

    out = export(str(studio.db), ExportRequest(project="team", what="dataset", out=str(studio.tmp / "team-data")))
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    named = {r["prompt"]: r["labelled_by"] for r in rows}
    assert named["question 2 about dogs"] == "ben" and named["question 4 about dogs"] == "ana"
    assert {r["labelled_by"] for r in rows} >= {"ana", "ben"}
    assert all(r["labelled_by"] is None for r in rows if r["source"] in ("seed", "self"))


def test_seed_decisions_carry_their_person_and_undo_stays_with_it(studio, people):
    ana, ben = people["ana"], people["ben"]
    store = Store(studio.db)
    try:
        proj = store.ensure_project("seeds")
        store.add_examples(proj.id, [Example(role="seed", prompt=[{"role": "user", "content": "Q?"}])])
        (prompt,) = store.seed_prompts(proj.id)
        store.add_seed_answers(
            proj.id, prompt.id, [SeedAnswer(prompt.id, k, f"answer {k}", logp=-1.0, tokens=2) for k in range(3)]
        )
        answers = [a.id for a in store.seed_answers(prompt.id)]
    finally:
        store.close()
    assert ana.predict("seeds", prompt.id, answers[0], answers[2], api_name="/rank_seed")["ranking"]["actor"] == "ana"
    assert ben.predict("seeds", prompt.id, "equal", api_name="/mark_seed")["ranking"]["actor"] == "ben"
    assert ana.predict("seeds", api_name="/undo_seed")["undone"]["actor"] == "ana"
    shown = ben.predict("seeds", prompt.id, api_name="/seed_prompt")["ranking"]
    assert (shown["status"], shown["actor"]) == ("equal", "ben")  # ana's undo left ben's decision in force
    assert ana.predict("seeds", api_name="/undo_seed")["undone"] is None


@pytest.mark.parametrize(
    "line, message",
    [
        ("ben:beta", "line 2: the hash must be pbkdf2_sha256$ITERATIONS$SALT$HEX"),
        ("ana:pbkdf2_sha256$20000$salt$zz", "line 2: the hash's digest is not hexadecimal"),
    ],
)
def test_a_malformed_users_file_stops_the_studio_before_it_listens(tmp_path, line, message):
    from benchmarks.harness import free_port

    users = tmp_path / "users.txt"
    users.write_text(f"{security.hash_line('carl', 'gamma-pass', FAST)}\n{line}\n", encoding="utf-8")
    port, db = free_port(), tmp_path / "never.db"
    done = subprocess.run(
        [sys.executable, "launch.py", "studio", "--db", str(db), "--port", str(port), "--users", str(users)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and f"users file {users}, {message}" in done.stderr
    assert "beta" not in done.stderr and "gamma-pass" not in done.stderr
    assert not _listening(port) and not db.exists()
