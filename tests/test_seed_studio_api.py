"""The seed builder as a user's script drives it: a studio with its worker on a mini demo world, a seed of prompts
alone uploaded, answers sampled by the `seed-answers` job (stopped and resumed like any job), then ranked, written,
marked equal or skipped and undone through the named endpoints; bad input refused with nothing changed; the ranked
prompts in the dataset export, with --seed-ordered-pairs every ordered pair."""

from __future__ import annotations

import json
import time

import pytest

from storage import Store
from tests.test_studio_api import start_studio, stop_studio

PROJECT = "seed-api"
CONFIG = "model: {model}\nrounds: 0\ngeneration:\n  temperature: 1.0\n  max_new_tokens: 12\nseed: 3\n"


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("seed_world"), size=WorldSize.mini(), progress=lambda *a: None)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, mini_world):
    tmp = tmp_path_factory.mktemp("seed_api")
    s = start_studio(tmp / "studio.db", env={"SPA_DEMO_DIR": str(mini_world.root)})
    s.tmp = tmp
    yield s
    stop_studio(s)


def prompts_file(path, prompts: list[str]) -> str:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    return str(path)


def pool_prompts(mini_world, n: int, skip: int = 0) -> list[str]:
    rows = [json.loads(line) for line in mini_world.pool_file.read_text().splitlines()[skip : skip + n]]
    return [row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"] for row in rows]


def snapshot(store: Store) -> tuple:
    return tuple(
        list(store.db.query(f"select * from {table} order by id"))
        for table in ("seed_answers", "seed_rankings", "jobs")
    )


def wait_for_job(client, job_id: int, states=("done",), timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(job_id, api_name="/job_status")
        if status["status"] in states:
            return status
        assert status["status"] != "failed", status["error"]
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not reach {states}: {status}")


def distinct_pair(view: dict) -> tuple[int, int] | None:
    """Two answers of different text (first and last such), or None when every answer reads the same."""
    answers = view["answers"]
    for first in answers:
        for last in reversed(answers):
            if first["text"].strip() != last["text"].strip():
                return first["id"], last["id"]
    return None


@pytest.fixture(scope="module")
def sampled(client, studio, mini_world):
    """The project with 5 seed prompts and 4 answers each, sampled by a job that was stopped and resumed once."""
    upload = prompts_file(studio.tmp / "prompts.jsonl", pool_prompts(mini_world, 5))
    report = client.predict(upload, PROJECT, "seed", api_name="/import_file")
    assert report["ok"] and report["added"] == 5, report
    saved = client.predict(PROJECT, "mini", CONFIG.format(model=mini_world.model_dir), api_name="/save_config")
    assert saved["name"] == "mini" and saved["file"].endswith("mini.yaml")
    progress = client.predict(PROJECT, api_name="/seed_progress")
    assert (progress["prompts"], progress["without_answers"], progress["seed_pairs"]) == (5, 5, 0)

    queued = client.predict(PROJECT, 4, api_name="/queue_seed_answers")
    assert (queued["samples"], queued["prompts"], queued["model"]) == (4, 5, str(mini_world.model_dir))
    job_id = queued["job_id"]
    # stop and resume, as every job does (queued: stopped at once; running: at its next step)
    client.predict(job_id, api_name="/stop_run")
    stopped = wait_for_job(client, job_id, ("stopped", "done"))
    if stopped["status"] == "stopped":
        assert client.predict(job_id, api_name="/resume_run")["status"] == "queued"
    done = wait_for_job(client, job_id)
    assert done["kind"] == "seed-answers" and [(s["stage"], s["state"]) for s in done["plan"]] == [("sample", "done")]
    assert any("20 answers written for 5 seed prompts" in e["message"] for e in done["log"])
    return job_id


def test_the_seed_endpoints_are_named_and_documented(client):
    import ast
    from pathlib import Path

    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = {"queue_seed_answers", "seed_prompt", "rank_seed", "write_seed_answer", "mark_seed", "undo_seed"}
    assert {f"/{name}" for name in names | {"seed_progress", "seed_pairs"}} <= set(endpoints)
    source = ast.parse((Path(__file__).parents[1] / "app" / "api.py").read_text())
    register = next(f for f in source.body if isinstance(f, ast.FunctionDef) and f.name == "register")
    documented = {f.name for f in register.body if isinstance(f, ast.FunctionDef) and ast.get_docstring(f)}
    assert names <= documented


def test_sampled_answers_come_with_their_log_probs_and_token_counts(client, sampled):
    progress = client.predict(PROJECT, api_name="/seed_progress")
    assert (progress["prompts"], progress["without_answers"], progress["unranked"]) == (5, 0, 5)
    view = client.predict(PROJECT, api_name="/seed_prompt")
    assert view["example_id"] is not None and view["ranking"] is None and view["prompt"][-1]["role"] == "user"
    assert [a["position"] for a in view["answers"]] == [1, 2, 3, 4]
    assert all(a["source"] == "model" and a["logp"] < 0 and a["tokens"] >= 1 for a in view["answers"])
    assert all(a["checks"] is None for a in view["answers"])  # the demo world has no instruction checks
    again = client.predict(PROJECT, view["example_id"], api_name="/seed_prompt")
    assert again["answers"] == view["answers"]
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="has answers already"):
        client.predict(PROJECT, 4, api_name="/queue_seed_answers")


def test_rank_write_equal_skip_and_undo(client, store, sampled):
    from gradio_client.exceptions import AppError

    project_id = store.project(PROJECT).id
    views = [client.predict(PROJECT, ex.id, api_name="/seed_prompt") for ex in store.seed_prompts(project_id)]
    rankable = [v for v in views if distinct_pair(v)]
    assert len(rankable) >= 2, "the mini model gave too few prompts with two different answers"
    first, second = rankable[:2]
    rest = [v for v in views if v["example_id"] not in (first["example_id"], second["example_id"])]

    # rank: best and worst by answer id
    best, worst = distinct_pair(first)
    ranked = client.predict(PROJECT, first["example_id"], best, worst, api_name="/rank_seed")
    assert ranked["ranking"]["status"] == "ranked" and ranked["ranking"]["actor"] == "api"
    assert (ranked["ranking"]["best_answer_id"], ranked["ranking"]["worst_answer_id"]) == (best, worst)
    assert ranked["next_example_id"] not in (None, first["example_id"]) and ranked["progress"]["ranked"] == 1

    # write a better answer: it is the best, the chosen worst the worst
    worst_of_second = second["answers"][2]["id"]
    written = client.predict(
        PROJECT, second["example_id"], "A PERSON'S ANSWER", worst_of_second, api_name="/write_seed_answer"
    )
    mine = store.seed_answers(second["example_id"])[-1]
    assert (mine.text, mine.source) == ("A PERSON'S ANSWER", "human")
    assert (written["ranking"]["best_answer_id"], written["ranking"]["worst_answer_id"]) == (mine.id, worst_of_second)

    # equal and skip
    assert (
        client.predict(PROJECT, rest[0]["example_id"], "equal", api_name="/mark_seed")["ranking"]["status"] == "equal"
    )
    skipped = client.predict(PROJECT, rest[1]["example_id"], "skip", api_name="/mark_seed")
    assert skipped["progress"]["skipped"] == 1
    progress = client.predict(PROJECT, api_name="/seed_progress")
    assert (progress["ranked"], progress["equal"], progress["skipped"], progress["unranked"]) == (2, 1, 1, 1)
    assert progress["seed_pairs"] == 2

    # the pairs the seed round will use
    pairs = client.predict(PROJECT, api_name="/seed_pairs")
    texts = {a["id"]: a["text"] for a in first["answers"]}
    assert [(p["example_id"], p["best"], p["worst"], p["who"]) for p in pairs] == sorted(
        [
            (first["example_id"], texts[best], texts[worst], "api"),
            (second["example_id"], "A PERSON'S ANSWER", second["answers"][2]["text"], "api"),
        ]
    )

    # undo takes back the API's own last decision (the skip), then the equal; a studio user's decision stays
    store.mark_seed(project_id, rest[2]["example_id"], "skip", "someone")
    undone = client.predict(PROJECT, api_name="/undo_seed")
    assert undone["undone"]["status"] == "skip" and undone["example_id"] == rest[1]["example_id"]
    assert undone["ranking"] is None and undone["progress"]["skipped"] == 1  # someone's skip is in force
    assert client.predict(PROJECT, api_name="/undo_seed")["example_id"] == rest[0]["example_id"]
    assert store.seed_ranking(rest[2]["example_id"]).actor == "someone"
    following = client.predict(PROJECT, after=first["example_id"], api_name="/seed_prompt")
    assert following["example_id"] in (rest[0]["example_id"], rest[1]["example_id"])

    # bad input: clear errors, nothing changed
    other = first["answers"][0]["id"] if best != first["answers"][0]["id"] else first["answers"][1]["id"]
    before = snapshot(store)
    bad = [
        ((PROJECT, 987654, best, worst), "/rank_seed", "example 987654 does not exist"),
        ((PROJECT, first["example_id"], best, best), "/rank_seed", "two different answers"),
        ((PROJECT, second["example_id"], best, other), "/rank_seed", "is not an answer to seed prompt"),
        (("no-such-project", first["example_id"], best, worst), "/rank_seed", "no project named 'no-such-project'"),
        ((PROJECT, first["example_id"], "  ", worst), "/write_seed_answer", "the written answer is empty"),
        ((PROJECT, first["example_id"], "maybe"), "/mark_seed", "'equal' or 'skip'"),
        ((PROJECT, 987654), "/seed_prompt", "example 987654 does not exist"),
        (("no-such-project",), "/seed_progress", "no project named"),
        (("no-such-project",), "/undo_seed", "no project named"),
        (("no-such-project", 4), "/queue_seed_answers", "no project named"),
        ((PROJECT, 1), "/queue_seed_answers", "samples must be at least 2"),
    ]
    for args, endpoint, message in bad:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name=endpoint)
    assert snapshot(store) == before


def test_a_prompt_without_answers_cannot_be_ranked_and_a_project_without_prompts_is_not_sampled(
    client, store, studio, mini_world, sampled
):
    from gradio_client.exceptions import AppError

    upload = prompts_file(studio.tmp / "more.jsonl", pool_prompts(mini_world, 1, skip=40))
    assert client.predict(upload, PROJECT, "seed", api_name="/import_file")["added"] == 1
    project_id = store.project(PROJECT).id
    fresh = store.seed_prompts(project_id)[-1]
    some = store.seed_answers(store.seed_prompts(project_id)[0].id)
    before = snapshot(store)
    with pytest.raises(AppError, match="has no answers yet"):
        client.predict(PROJECT, fresh.id, some[0].id, some[1].id, api_name="/rank_seed")
    with pytest.raises(AppError, match="has no answers yet"):
        client.predict(PROJECT, fresh.id, "equal", api_name="/mark_seed")
    client.predict("no-prompts", api_name="/create_project")
    with pytest.raises(AppError, match="no-prompts has no seed prompts"):
        client.predict("no-prompts", 4, api_name="/queue_seed_answers")
    assert snapshot(store) == before
    assert client.predict(PROJECT, api_name="/seed_progress")["without_answers"] == 1


def test_the_dataset_export_holds_ranked_prompts_and_with_the_flag_every_ordered_pair(store, studio, sampled):
    import launch

    project_id = store.project(PROJECT).id
    ranked = [r for r in store.seed_rankings(project_id) if r.undone_at is None and r.status == "ranked"]
    assert ranked
    out = studio.tmp / "pairs"
    assert (
        launch.main(["export", "--db", str(studio.db), "--project", PROJECT, "--what", "dataset", "--out", str(out)])
        == 0
    )
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert sorted(r["source"] for r in rows) == ["human"] * len(store.seed_pairs(project_id))
    ordered_out = studio.tmp / "ordered"
    args = ["export", "--db", str(studio.db), "--project", PROJECT, "--what", "dataset", "--out", str(ordered_out)]
    assert launch.main(args + ["--seed-ordered-pairs"]) == 0
    ordered = [json.loads(line) for line in (ordered_out / "train.jsonl").read_text().splitlines()]
    assert len(ordered) == len(store.seed_ordered_pairs(project_id)) > len(rows)


def test_the_world_says_what_it_checks_of_one_answer(tmp_path, monkeypatch):
    from engine.worlds.world import DEMO, TEXT

    assert DEMO.answer_checks([{"role": "user", "content": "next: 3"}], "4") is None
    monkeypatch.setenv("SPA_TEXT_DIR", str(tmp_path / "nowhere"))
    checks = TEXT.answer_checks([{"role": "user", "content": "Write a poem."}], "A poem.")
    assert checks["checks"] == [] and "no text world" in checks["note"]
