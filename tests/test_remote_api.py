"""The remote API a script on another machine uses, through gradio_client against a `launch.py studio` subprocess:
files uploaded with `handle_file` (and the server paths as before), imported rows paged, the dataset exported and
downloaded, model and adapter exports queued and fetched, a job's log tail, save_config's answer. Every refusal
(unknown project, job or round, a file too large or not a data file) is checked to change nothing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from app.actions import MAX_UPLOAD_MB
from storage import Artifact, Job, Store
from tests.test_studio_api import insert_pairs, start_studio, stop_studio, write_trl_jsonl

LIMIT = MAX_UPLOAD_MB * 2**20


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote_api")
    s = start_studio(tmp / "studio.db", "--no-worker")
    s.tmp = tmp
    yield s
    stop_studio(s)


@pytest.fixture
def elsewhere(tmp_path_factory) -> Path:
    """A folder outside the studio's data roots: where a client keeps its own files."""
    return tmp_path_factory.mktemp("client_side")


def counts(store: Store) -> tuple:
    return tuple(store.db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("projects", "examples", "jobs"))


def exported_folders(studio) -> list[Path]:
    root = studio.tmp / "exports"
    return sorted(p for p in root.rglob("*") if p.is_dir()) if root.exists() else []


def test_the_remote_endpoints_are_named(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("imported_rows", "export_dataset", "export_model", "download_export", "job_log"):
        assert f"/{name}" in endpoints
    assert client.config["max_file_size"] == LIMIT


def test_a_file_uploaded_with_handle_file_is_previewed_then_imported(client, store, elsewhere):
    seed = write_trl_jsonl(elsewhere / "my seed.jsonl", n=4)
    preview = client.predict(handle_file(str(seed)), "seed", api_name="/preview_file")
    assert preview["ok"] and preview["file"] == "my seed.jsonl" and preview["examples"] == 4
    assert preview["first_rows"][1]["prompt"] == "What is 1 + 1?"
    assert store.project("uploaded") is None  # a preview writes nothing

    report = client.predict(handle_file(str(seed)), "uploaded", "seed", api_name="/import_file")
    assert report["ok"] and report["added"] == 4 and report["file"] == "my seed.jsonl"
    rows = client.predict("uploaded", "seed", api_name="/imported_rows")
    assert rows["total"] == 4 and [r["file"] for r in rows["rows"]] == ["my seed.jsonl"] * 4
    assert rows["rows"][2]["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert (rows["rows"][2]["chosen"], rows["rows"][2]["rejected"]) == ("4", "5")
    again = client.predict(handle_file(str(seed)), "uploaded", "seed", api_name="/import_file")
    assert again["ok"] and (again["added"], again["already_present"]) == (0, 4)


def test_a_server_path_is_read_under_the_data_roots_only(client, store, studio, elsewhere):
    inside = write_trl_jsonl(studio.tmp / "server-side.jsonl", n=2)
    assert client.predict(str(inside), "by-path", "seed", api_name="/import_file")["added"] == 2
    outside = write_trl_jsonl(elsewhere / "outside.jsonl", n=2)
    before = counts(store)
    for endpoint, args in (("/preview_file", (str(outside), "seed")), ("/import_file", (str(outside), "p", "seed"))):
        with pytest.raises(AppError, match="reads files only under"):
            client.predict(*args, api_name=endpoint)
    assert counts(store) == before


def test_a_file_over_the_limit_is_refused_and_nothing_is_imported(client, store, studio, elsewhere):
    before = counts(store)
    for folder in (elsewhere, studio.tmp):
        with open(folder / "huge.jsonl", "wb") as f:
            f.truncate(LIMIT + 2**20)  # sparse: 201 MiB on paper, nothing on disk
    # an upload: gradio_client refuses it before sending a byte, naming the file and the studio's limit
    with pytest.raises(ValueError, match=rf"huge.jsonl exceeds the maximum file size of {LIMIT} bytes"):
        client.predict(handle_file(str(elsewhere / "huge.jsonl")), "big", "seed", api_name="/import_file")
    # a file already on the studio's machine: refused by the import, with nothing read
    for report in (
        client.predict(str(studio.tmp / "huge.jsonl"), "seed", api_name="/preview_file"),
        client.predict(str(studio.tmp / "huge.jsonl"), "big", "seed", api_name="/import_file"),
    ):
        assert not report["ok"] and report["added"] == 0
        assert [(i["file"], i["message"].split(" (")[0]) for i in report["issues"]] == [
            ("huge.jsonl", f"201.0 MiB is over the import limit of {MAX_UPLOAD_MB}.0 MiB")
        ]
    assert counts(store) == before and store.project("big") is None


def test_a_file_that_is_not_data_is_refused_by_name_and_nothing_is_imported(client, store, elsewhere):
    (elsewhere / "notes.txt").write_text("remember the milk\n", encoding="utf-8")
    (elsewhere / "garbled.jsonl").write_bytes(b'{"prompt": "p", "chosen": "c", "rejected": "r"}\n\x00\x01 not json\n')
    before = counts(store)
    notes = client.predict(handle_file(str(elsewhere / "notes.txt")), "bad", "pool", api_name="/import_file")
    assert not notes["ok"] and notes["added"] == 0
    assert notes["issues"][0]["file"] == "notes.txt" and "unsupported file type" in notes["issues"][0]["message"]
    garbled = client.predict(handle_file(str(elsewhere / "garbled.jsonl")), "bad", "seed", api_name="/import_file")
    assert not garbled["ok"] and garbled["added"] == 0
    assert {(i["file"], i["line"]) for i in garbled["issues"]} == {("garbled.jsonl", 2)}
    preview = client.predict(handle_file(str(elsewhere / "notes.txt")), "seed", api_name="/preview_file")
    assert not preview["ok"] and preview["issues"][0]["file"] == "notes.txt"
    with pytest.raises(AppError, match="role must be one of seed, pool, eval"):
        client.predict(handle_file(str(elsewhere / "garbled.jsonl")), "bad", "train", api_name="/import_file")
    assert counts(store) == before and store.project("bad") is None


def test_imported_rows_come_a_page_at_a_time_by_role(client, elsewhere):
    seed = write_trl_jsonl(elsewhere / "seed7.jsonl", n=7)
    pool = elsewhere / "pool.jsonl"
    pool.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(5)), encoding="utf-8")
    client.predict(handle_file(str(seed)), "paged", "seed", api_name="/import_file")
    client.predict(handle_file(str(pool)), "paged", "pool", api_name="/import_file")

    pages = [client.predict("paged", "seed", page, 3, api_name="/imported_rows") for page in range(3)]
    assert [(p["total"], p["pages"], len(p["rows"])) for p in pages] == [(7, 3, 3), (7, 3, 3), (7, 3, 1)]
    assert [r["line"] for p in pages for r in p["rows"]] == list(range(1, 8))
    assert client.predict("paged", "seed", 3, 3, api_name="/imported_rows")["rows"] == []
    pool_page = client.predict("paged", "pool", api_name="/imported_rows")
    assert pool_page["total"] == 5 and pool_page["rows"][4]["prompt"][-1]["content"] == "prompt 4"
    assert all(r["chosen"] is None and r["rejected"] is None for r in pool_page["rows"])
    assert client.predict("paged", "eval", api_name="/imported_rows")["total"] == 0

    for args, message in (
        (("nowhere", "seed"), "no project named 'nowhere'"),
        (("paged", "train"), "role must be one of"),
        (("paged", "seed", 0, 0), "page_size must be from 1 to 500"),
        (("paged", "seed", 0, 501), "page_size must be from 1 to 500"),
        (("paged", "seed", -1, 3), "page must be 0 or more"),
    ):
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/imported_rows")


def test_save_config_answers_without_a_path_the_client_would_fetch(client, store):
    """It answered {"path": ...} before, which gradio_client took for a file and failed to download (403)."""
    saved = client.predict("demo", "remote", "model: demo:model\nrounds: 1\n", api_name="/save_config")
    assert "path" not in saved and saved["file"].endswith("runs/demo/configs/remote.yaml")
    assert (
        Path(saved["file"]).read_text(encoding="utf-8")
        == saved["yaml"]
        == "project: demo\nmodel: demo:model\nrounds: 1\n"
    )
    assert store.configs(store.project("demo").id)[-1]["name"] == "remote"
    with pytest.raises(AppError, match="unknown key 'betta'"):
        client.predict("demo", "bad", "model: demo:model\nbetta: 1\n", api_name="/save_config")


def test_the_dataset_is_exported_and_downloaded_in_each_format(client, store, studio, elsewhere):
    from datasets import load_dataset, load_from_disk

    job_id, ids = insert_pairs(studio.db, "grown", n=6)
    seed = write_trl_jsonl(elsewhere / "seed.jsonl", n=2)
    client.predict(handle_file(str(seed)), "grown", "seed", api_name="/import_file")
    client.predict(ids[0], "flip", api_name="/set_label")
    client.predict(ids[1], "tie", api_name="/set_label")  # no preference: left out

    got = client.predict("grown", api_name="/export_dataset")
    assert got["what"] == "dataset" and Path(got["out"]).parent == studio.tmp / "exports" / "grown"
    assert Path(got["file"]).name == "train.jsonl" and Path(got["file"]).is_file()  # downloaded by the client
    rows = load_dataset("json", data_files=got["file"], split="train")
    assert len(rows) == 2 + 5 and sorted(rows["source"]) == ["human"] + ["seed"] * 2 + ["self"] * 4
    flipped = next(r for r in rows if r["source"] == "human")
    assert (flipped["chosen"], flipped["rejected"]) == ("answer B0", "answer A0")
    assert Path(got["card"]).read_text(encoding="utf-8") == (Path(got["out"]) / "README.md").read_text()

    human = client.predict("grown", "parquet", "exports/human-only", ["human"], api_name="/export_dataset")
    assert Path(human["out"]) == studio.tmp / "exports" / "human-only"
    assert load_dataset("parquet", data_files=human["file"], split="train")["source"] == ["human"]

    folder = client.predict("grown", "hf", api_name="/export_dataset")
    assert Path(folder["file"]).suffix == ".zip"
    with zipfile.ZipFile(folder["file"]) as z:
        z.extractall(elsewhere / "unzipped")
    assert len(load_from_disk(str(elsewhere / "unzipped" / Path(folder["out"]).name))) == 7


def test_a_refused_dataset_export_writes_nothing(client, store, studio):
    insert_pairs(studio.db, "refused-export", n=2)
    client.predict("refused-export", "jsonl", "exports/kept", api_name="/export_dataset")
    kept = (studio.tmp / "exports" / "kept" / "train.jsonl").read_text()
    before = exported_folders(studio)
    for args, message in (
        (("nowhere",), "no project named 'nowhere'"),
        (("refused-export", "csv"), "format must be one of jsonl, parquet, hf"),
        (("refused-export", "jsonl", "", ["judge"]), "unknown source"),
        (("refused-export", "jsonl", "", ["gold"]), "no preference pairs of project 'refused-export' match"),
        (("refused-export", "jsonl", "../../escaped"), "outside the export folder"),
        (("refused-export", "jsonl", "/tmp/anywhere"), "outside the export folder"),
        (("refused-export", "jsonl", "exports/kept"), "is not empty"),
    ):
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/export_dataset")
    with pytest.raises(AppError, match="run 987654 is not a run of project 'refused-export'"):
        client.predict("refused-export", job_id=987654, api_name="/export_dataset")
    assert exported_folders(studio) == before
    assert (studio.tmp / "exports" / "kept" / "train.jsonl").read_text() == kept


def test_a_model_export_of_a_run_or_round_that_does_not_exist_is_refused_and_nothing_is_queued(client, store, studio):
    job_id, _ = insert_pairs(studio.db, "models", n=2)
    saved = studio.tmp / "runs" / "models" / "round1"
    saved.mkdir(parents=True)
    (saved / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "base"}), encoding="utf-8")
    (saved / "adapter_model.safetensors").write_bytes(b"")
    project_id = store.project("models").id
    store.add_artifact(Artifact(project_id, "adapter", str(saved), job_id, 1, {"base_model": "HuggingFaceTB/base"}))
    insert_pairs(studio.db, "no-models", n=1)
    jobs_before, folders_before = len(store.jobs()), exported_folders(studio)
    for kwargs, message in (
        ({"round": 7}, f"run {job_id} has no saved model for round 7 \\(rounds: 1\\)"),
        ({"job_id": 987654}, "run 987654 is not a run of project 'models'"),
        ({"what": "weights"}, "what must be model or adapter"),
        ({"out": "../../escaped"}, "outside the export folder"),
    ):
        with pytest.raises(AppError, match=message):
            client.predict("models", api_name="/export_model", **kwargs)
    with pytest.raises(AppError, match="no project named 'nowhere'"):
        client.predict("nowhere", api_name="/export_model")
    with pytest.raises(AppError, match="project 'no-models' has no run with a saved model yet"):
        client.predict("no-models", "adapter", api_name="/export_model")
    assert len(store.jobs()) == jobs_before and exported_folders(studio) == folders_before

    queued = client.predict("models", "adapter", 1, job_id, api_name="/export_model")
    assert queued["status"] == "queued" and Path(queued["out"]).parent == studio.tmp / "exports" / "models"
    job = store.job(queued["job_id"])
    assert job.kind == "export" and job.status == "queued"
    with pytest.raises(AppError, match=f"export job {job.id} is queued: its file can be downloaded once it is done"):
        client.predict(job.id, api_name="/download_export")
    with pytest.raises(AppError, match=f"job {job_id} is a run job, not an export"):
        client.predict(job_id, api_name="/download_export")
    with pytest.raises(AppError, match="no run with id 987654"):
        client.predict(987654, api_name="/download_export")
    assert not Path(queued["out"]).exists()


def test_a_jobs_log_tail(client, store):
    project_id = store.ensure_project("logged").id
    job_id = store.enqueue(Job(project_id=project_id, kind="run", config_yaml=""))
    for i in range(6):
        store.log(job_id, f"line {i}", level="warning" if i == 4 else "info")
    tail = client.predict(job_id, 3, api_name="/job_log")
    assert [line["message"] for line in tail["lines"]] == ["line 3", "line 4", "line 5"]
    assert tail["status"] == "queued" and tail["text"].splitlines()[1].endswith(" warning line 4")
    after = client.predict(job_id, 50, tail["lines"][1]["id"], api_name="/job_log")
    assert [line["message"] for line in after["lines"]] == ["line 5"]
    assert len(client.predict(job_id, api_name="/job_log")["lines"]) == 6
    for args, message in (((987654,), "no run with id 987654"), ((job_id, 0), "lines must be from 1 to 2000")):
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/job_log")
