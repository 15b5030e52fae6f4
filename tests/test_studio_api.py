"""The studio as a user's script sees it: a `launch.py studio` subprocess driven through its named API
endpoints with gradio_client; storage is checked directly. Plus the launch refusals (security) and one
run through a real worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.harness import free_port
from storage import Job, Pair, Store

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240  # a loaded 2-core machine (training beside the tests) takes minutes to import gradio


def clean_env() -> dict:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    for key in ("SPA_AUTH", "GRADIO_SERVER_PORT", "GRADIO_SERVER_NAME"):
        env.pop(key, None)
    return env


def start_studio(db: Path, *extra: str, env: dict | None = None) -> SimpleNamespace:
    """`python launch.py studio` in a subprocess, once it answers HTTP; `env` adds environment variables."""
    port = free_port()
    log = open(db.with_suffix(".log"), "w")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "studio", "--db", str(db), "--port", str(port), *extra],
        cwd=ROOT,
        env={**clean_env(), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return SimpleNamespace(url=url, port=port, db=db, proc=proc, log=log)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    log.close()
    pytest.fail(f"the studio did not start:\n{db.with_suffix('.log').read_text()}")


def stop_studio(studio: SimpleNamespace) -> None:
    studio.proc.terminate()
    try:
        studio.proc.wait(40)
    except subprocess.TimeoutExpired:
        studio.proc.kill()
    studio.log.close()


def write_trl_jsonl(path: Path, n: int = 3) -> Path:
    rows = [{"prompt": f"What is {i} + {i}?", "chosen": f"{2 * i}", "rejected": f"{2 * i + 1}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def insert_pairs(db: Path, project: str, n: int = 12) -> tuple[int, list[int]]:
    """Judged pairs of one run, as the worker would leave them, without training anything."""
    store = Store(db)
    try:
        proj = store.ensure_project(project)
        job_id = store.enqueue(Job(project_id=proj.id, kind="run", config_yaml=""))
        store.finish_job(job_id, "done")
        pairs = [
            Pair(
                job_id=job_id,
                round=1 + i % 2,
                project_id=proj.id,
                prompt=[{"role": "user", "content": f"question {i} about {'cats' if i % 3 == 0 else 'dogs'}"}],
                response_a=f"answer A{i}",
                response_b=f"answer B{i}",
                confidence=0.5 + i / (2 * n),
                margin=i / n,
                reward_a=0.2,
                reward_b=0.1,
                judge_label="a",
                label="a",
                label_source="self",
                noisy=(i % 4 == 3),
                ext_margin=-0.1 * i,
                gold_a=1.0,
                gold_b=0.0,
            )
            for i in range(n)
        ]
        store.add_pairs(pairs)
        ids = [p.id for p in store.pairs(job_id)]
        return job_id, ids
    finally:
        store.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio_api")
    s = start_studio(tmp / "studio.db", "--no-worker")
    s.tmp = tmp
    yield s
    stop_studio(s)


def test_fresh_database_has_the_demo_project_ready_but_not_started(client, store):
    assert client.predict(api_name="/list_projects") == ["demo"]
    demo = store.project("demo")
    configs = store.configs(demo.id)
    assert configs and configs[0]["yaml"] == (ROOT / "configs" / "demo.yaml").read_text()
    assert store.jobs(demo.id) == []
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in (
        "import_file",
        "queue_run",
        "job_status",
        "review_page",
        "set_label",
        "get_pair",
        "stop_run",
        "resume_run",
        "approve_review",
        "bulk_accept",
    ):
        assert f"/{name}" in endpoints


def test_import_a_seed_file_and_refuse_a_broken_one(client, store, studio):
    good = write_trl_jsonl(studio.tmp / "seed.jsonl", n=3)
    preview = client.predict(str(good), "seed", api_name="/preview_file")
    assert preview["ok"] and preview["examples"] == 3 and preview["first_rows"][0]["prompt"] == "What is 0 + 0?"
    assert store.project("api-project") is None  # a preview writes nothing

    report = client.predict(str(good), "api-project", "seed", api_name="/import_file")
    assert report["ok"] and report["added"] == 3 and "trl" in report["format"]
    project = store.project("api-project")
    assert store.count_examples(project.id, "seed") == 3

    bad = studio.tmp / "broken.jsonl"
    bad.write_text(
        '{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "q", "chosen": 5, "rejected": "r"}\n{not json\n',
        encoding="utf-8",
    )
    report = client.predict(str(bad), "api-project", "seed", api_name="/import_file")
    assert not report["ok"] and report["added"] == 0
    lines = {i["line"] for i in report["issues"]}
    assert {2, 3} <= lines and all(i["file"] == "broken.jsonl" for i in report["issues"])
    assert any(i["field"] == "chosen" for i in report["issues"])
    assert store.count_examples(project.id, "seed") == 3  # all or nothing


def test_queue_a_run_and_follow_its_progress(client, store):
    demo_yaml = (ROOT / "configs" / "demo.yaml").read_text()
    queued = client.predict("demo", demo_yaml, api_name="/queue_run")
    job_id = queued["job_id"]
    job = store.job(job_id)
    assert job.status == "queued" and job.kind == "run" and "project: demo" in job.config_yaml

    status = client.predict(job_id, api_name="/job_status")
    assert status["status"] == "queued" and status["stages_total"] == 16 and status["stages_done"] == 0
    assert status["log"][-1]["message"].startswith("queued from the studio")

    # what a worker writes while it runs, read back through the API
    store.claim_job("test-worker:1", os.getpid(), job_id)
    store.stage_done(job_id, 0, "prepare")
    store.update_job(job_id, stage="seed", round=0, progress_done=5, progress_total=20, eta_s=12.5)
    status = client.predict(job_id, api_name="/job_status")
    assert (status["status"], status["stage"], status["round"]) == ("running", "seed", 0)
    assert status["progress_done"] == 5 and status["progress_total"] == 20 and status["fraction"] == 0.25
    assert status["eta_s"] == 12.5 and status["stages_done"] == 1
    assert [s["state"] for s in status["plan"][:3]] == ["done", "current", "pending"]

    assert client.predict(job_id, api_name="/stop_run")["stop_requested"] is True
    assert store.job(job_id).stop_requested
    store.finish_job(job_id, "stopped")
    assert client.predict(job_id, api_name="/resume_run")["status"] == "queued"
    assert store.job(job_id).status == "queued"
    client.predict(job_id, api_name="/stop_run")  # a queued job stops at once
    assert store.job(job_id).status == "stopped"


def test_an_invalid_configuration_is_refused_with_its_line_and_nothing_is_queued(client, store):
    from gradio_client.exceptions import AppError

    before = len(store.jobs())
    with pytest.raises(AppError, match=r"config:3: unknown key 'betta'"):
        client.predict("demo", "model: demo:model\nprompt_pool: demo:pool.jsonl\nbetta: 0.1\n", api_name="/queue_run")
    assert len(store.jobs()) == before


def test_review_page_flip_a_label_and_read_it_back(client, store, studio):
    job_id, ids = insert_pairs(studio.db, "review-project", n=12)
    page = client.predict("review-project", api_name="/review_page")
    assert page["total"] == 12 and len(page["rows"]) == 12
    pairs = [store.pair(i) for i in page["pair_ids"]]
    flagged = [p for p in pairs if p.noisy]
    assert pairs[: len(flagged)] == flagged  # flagged first ...
    for group in (pairs[: len(flagged)], pairs[len(flagged) :]):
        assert [p.confidence for p in group] == sorted(p.confidence for p in group)  # ... then least confident

    small = client.predict("review-project", 1, 5, api_name="/review_page")
    assert small["page"] == 1 and small["pages"] == 3 and small["pair_ids"] == page["pair_ids"][5:10]
    cats = client.predict("review-project", search="cats", round=1, api_name="/review_page")
    prompt_column = cats["columns"].index("prompt")
    assert cats["total"] == 2 and all("cats" in row[prompt_column] for row in cats["rows"])
    assert client.predict("review-project", flagged=True, api_name="/review_page")["total"] == len(flagged)

    target = page["pair_ids"][0]
    result = client.predict(target, "flip", api_name="/set_label")
    assert result["label"] == "b" and result["label_source"] == "human"
    pair = client.predict(target, api_name="/get_pair")
    assert pair["label"] == "b" and pair["label_source"] == "human" and not pair["noisy"]
    assert [(e["old_label"], e["new_label"], e["new_source"], e["actor"]) for e in pair["events"]] == [
        ("a", "b", "human", "api")
    ]
    events = store.label_events(target)
    assert len(events) == 1 and events[0].old_source == "self" and events[0].new_label == "b"

    # a written answer is chosen; without an a/b choice of the person, the judge's pick (a) is its rejected partner
    rewrite = client.predict(page["pair_ids"][1], "keep", "a much better answer", api_name="/set_label")
    assert rewrite["human_response"] == "a much better answer" and rewrite["label"] == "b"
    human = client.predict("review-project", source="human", api_name="/review_page")
    assert human["total"] == 2
    accepted = client.predict("review-project", 0.9, api_name="/bulk_accept")["accepted"]
    labelled = (target, page["pair_ids"][1])
    confident_self = [p for p in store.pairs(job_id) if p.confidence >= 0.9 and p.id not in labelled]
    assert accepted == len(confident_self) > 0
    assert {store.pair(p.id).label_source for p in confident_self} == {"accepted"}
    assert client.predict("review-project", source="human", api_name="/review_page")["total"] == 2


def test_an_unknown_job_id_is_refused_with_a_clear_error(client):
    from gradio_client.exceptions import AppError

    for endpoint in ("/job_status", "/stop_run", "/resume_run", "/job_metrics", "/approve_review"):
        with pytest.raises(AppError, match="no run with id 987654"):
            client.predict(987654, api_name=endpoint)


def test_labelling_an_unknown_pair_or_label_is_refused(client, studio):
    from gradio_client.exceptions import AppError

    _, ids = insert_pairs(studio.db, "refusals", n=2)
    with pytest.raises(AppError, match="no pair 999999"):
        client.predict(999999, "a", api_name="/set_label")
    with pytest.raises(AppError, match="unknown label 'maybe'"):
        client.predict(ids[0], "maybe", api_name="/set_label")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], ["--share"], ["--host", "0.0.0.0", "--auth", "nopassword"]])
def test_refuses_to_listen_beyond_loopback_without_auth(tmp_path, args):
    port = free_port()
    db = tmp_path / "refused.db"
    done = subprocess.run(
        [sys.executable, "launch.py", "studio", "--db", str(db), "--port", str(port), *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "auth" in done.stderr.lower() and ("refusing" in done.stderr or "USER:PASSWORD" in done.stderr)
    assert not _listening(port) and not db.exists()


def test_launch_settings():
    from app import security

    assert security.is_loopback("127.0.0.1") and security.is_loopback("localhost") and security.is_loopback("::1")
    assert not security.is_loopback("0.0.0.0") and not security.is_loopback("192.168.1.4")
    host, credentials = security.check_launch("0.0.0.0", False, ["me:secret"])
    assert host == "0.0.0.0" and credentials.users == ("me",) and credentials.check("me", "secret")
    os.environ["GRADIO_SERVER_PORT"] = "7999"
    try:
        assert security.resolve_port(None) == 7999 and security.resolve_port(8001) == 8001
    finally:
        del os.environ["GRADIO_SERVER_PORT"]
    assert security.resolve_port(None) == 7860


def test_next_page_starts_after_what_moved_away():
    from app.actions import ReviewQuery, next_offset

    default = ReviewQuery()
    assert next_offset(0, 20, [], default) == 20  # nothing labelled: the plain next page
    # two flagged pairs lost their flag (and sort later), one unflagged pair kept its place
    assert next_offset(0, 20, [(True, "human", False), (True, "human", False), (False, "human", False)], default) == 18
    self_only = ReviewQuery(source="self")  # every labelled pair leaves a 'self' filter
    assert next_offset(40, 20, [(False, "human", False)] * 5, self_only) == 55


@pytest.mark.slow
def test_a_queued_run_reaches_the_worker_and_its_failure_comes_back(tmp_path):
    """UI → storage → worker → storage → UI with a worker that `serve` starts (and stops with the studio):
    a run whose seed file is broken fails in its prepare stage, and the studio reports why (a file that does not
    exist at all is refused before anything is queued)."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    studio = start_studio(tmp_path / "worker.db")
    try:
        client = Client(studio.url, verbose=False)
        missing = f"model: {tmp_path}\nrounds: 0\nseed_data: {tmp_path / 'missing.jsonl'}\n"
        with pytest.raises(AppError, match="key 'seed_data': no such file"):
            client.predict("demo", missing, api_name="/queue_run")
        (tmp_path / "missing.jsonl").write_text("this line is not JSON\n", encoding="utf-8")
        config = f"model: {tmp_path}\nrounds: 0\nseed_data: {tmp_path / 'missing.jsonl'}\n"
        job_id = client.predict("demo", config, api_name="/queue_run")["job_id"]
        deadline = time.monotonic() + 120
        status = client.predict(job_id, api_name="/job_status")
        while status["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(1)
            status = client.predict(job_id, api_name="/job_status")
        assert status["status"] == "failed", status
        assert "missing.jsonl" in status["error"]
    finally:
        stop_studio(studio)
    worker_pids = [
        int(line.split()[0])
        for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
        if "launch.py worker" in line and str(tmp_path / "worker.db") in line
    ]
    assert worker_pids == [], "the studio left its worker running"


def test_the_fast_review_page_matches_the_review_queue(tmp_path):
    """Store.review_page (what the studio pages with) returns exactly Store.review_queue's pages."""
    from storage import ReviewFilter

    _, ids = insert_pairs(tmp_path / "same.db", "same", n=40)
    store = Store(tmp_path / "same.db")
    try:
        store.set_label(ids[3], "b", "human")
        store.update_pairs({ids[5]: {"noisy": None}, ids[6]: {"confidence": 0.75}})
        project = store.project("same").id
        filters = [
            ReviewFilter(project),
            ReviewFilter(project, limit=7, offset=7),
            ReviewFilter(project, round=2),
            ReviewFilter(project, noisy=True),
            ReviewFilter(project, noisy=False, order="confident"),
            ReviewFilter(project, label_source="human"),
            ReviewFilter(project, search="cats", offset=2, limit=3),
            ReviewFilter(project, min_confidence=0.6, max_confidence=0.8, order="newest"),
            ReviewFilter(project, offset=30, limit=7),
            ReviewFilter(project, offset=36, order="confident"),
            ReviewFilter(project, offset=25, order="newest", noisy=False),
            ReviewFilter(project, offset=100),
        ]
        for f in filters:
            fast, slow = store.review_page(f), store.review_queue(f)
            assert [p.id for p in fast[0]] == [p.id for p in slow[0]] and fast[1] == slow[1], f
    finally:
        store.close()
