"""examples/remote_client.py end to end, as a team's script: run in its own process against a live studio (with its
worker) where two people have accounts, it uploads the mini demo world's seed and pool, runs a round to its review
gate, labels as both people, and downloads the exported dataset. Checked here: what it downloaded (read with
`datasets.load_dataset`, provenance naming both people), who the studio recorded for each label, and the run's
adapter exported and downloaded as a zip through the same API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from collections import Counter

import pytest

from storage import Store
from tests.test_studio_api import ROOT, start_studio, stop_studio

PEOPLE = {"alice": "alice-pw-1", "bob": "bob-pw-2"}
PROJECT = "remote-team"
pytestmark = pytest.mark.slow  # a studio with its worker, a run and an export job: ~110 s on an idle machine
SCRIPT_TIMEOUT_S = 420  # ~75 s on an idle 2-core machine (half of it the stage server's first torch import)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote_client")
    auth = [arg for name, password in PEOPLE.items() for arg in ("--auth", f"{name}:{password}")]
    s = start_studio(tmp / "studio.db", *auth)
    s.tmp = tmp
    yield s
    stop_studio(s)


@pytest.fixture(scope="module")
def script_run(studio, tmp_path_factory):
    """The script in another process (the mini world built by it, on its side), and what it left in --out."""
    here = tmp_path_factory.mktemp("client_machine")
    world, out = here / "world", here / "download"
    users = [arg for name, password in PEOPLE.items() for arg in ("--user", f"{name}:{password}")]
    command = [sys.executable, str(ROOT / "examples" / "remote_client.py"), "--url", studio.url, *users]
    command += ["--project", PROJECT, "--world", str(world), "--mini", "--model", str(world / "model")]
    command += ["--per-person", "3", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run(command, cwd=here, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    print(f"examples/remote_client.py took {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout, out


def test_the_script_downloads_a_dataset_whose_provenance_names_both_people(script_run, studio):
    from datasets import load_dataset

    stdout, out = script_run
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["labelled"]) == set(PEOPLE) and all(len(ids) == 3 for ids in summary["labelled"].values())
    rows = load_dataset("json", data_files=str(out / "train.jsonl"), split="train")
    store = Store(studio.db)
    try:
        project = store.project(PROJECT)
        pairs = store.pairs(summary["job_id"])
        assert store.count_examples(project.id, "seed") == 2 and store.count_examples(project.id, "pool") == 60
        for name, ids in summary["labelled"].items():
            for pair_id in ids:  # each label is its signer's: none "api", none the other person's
                assert [e.actor for e in store.label_events(pair_id)] == [name]
    finally:
        store.close()
    # every pair of the round with a preference is in the dataset (a tie is none), each as its labeller left it
    preferred = [p for p in pairs if p.label in ("a", "b")]
    assert len(rows) == 2 + len(preferred) == summary["rows"]
    assert Counter(rows["source"]) == Counter(["seed"] * 2 + [p.label_source for p in preferred])
    assert Counter(rows["labelled_by"]) == {None: len(rows) - 6, "alice": 3, "bob": 3}
    assert summary["labelled_by"] == {"None": len(rows) - 6, "alice": 3, "bob": 3}  # what the script printed
    for row in rows:
        assert (row["source"] == "human") == (row["labelled_by"] is not None)
    assert "labelled_by" in (out / "README.md").read_text()
    assert "signed in as alice" in stdout and "signed in as bob" in stdout and "labelled_by: {" in stdout


def test_the_runs_adapter_is_exported_and_downloaded_as_a_zip(script_run, studio):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(studio.url, auth=("bob", PEOPLE["bob"]), verbose=False)
    job_id = json.loads((script_run[1] / "summary.json").read_text())["job_id"]
    store = Store(studio.db)
    try:
        jobs_before = len(store.jobs())
        with pytest.raises(AppError, match=f"run {job_id} has no saved model for round 9 \\(rounds: 0, 1\\)"):
            client.predict(PROJECT, "adapter", 9, api_name="/export_model")
        assert len(store.jobs()) == jobs_before
        queued = client.predict(PROJECT, "adapter", 1, job_id, "exports/team-adapter", api_name="/export_model")
        deadline = time.monotonic() + 240
        while store.job(queued["job_id"]).status in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(1)
        assert store.job(queued["job_id"]).status == "done", client.predict(queued["job_id"], api_name="/job_log")
    finally:
        store.close()
    got = client.predict(queued["job_id"], api_name="/download_export")
    assert got["what"] == "adapter" and got["out"] == str(studio.tmp / "exports" / "team-adapter")
    with zipfile.ZipFile(got["file"]) as z:
        names = set(z.namelist())
    assert {"team-adapter/adapter_config.json", "team-adapter/adapter_model.safetensors"} <= names
    assert "team-adapter/README.md" in names and not any(n.endswith((".bin", ".pt")) for n in names)
    card = open(got["card"], encoding="utf-8").read()
    assert f"# {PROJECT}: SPA round 1\n" in card and f"run {job_id}, round 1" in card
