"""The studio reads data files and writes exports only under its roots, checked after resolving `..` and links."""

from __future__ import annotations

import pytest

from app.actions import ActionError, export_root, readable_path
from app.export_tab import request_for
from engine.data.export import ExportError
from engine.data.export.staging import destination


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.delenv("SPA_DATA_ROOTS", raising=False)
    monkeypatch.delenv("SPA_EXPORT_ROOT", raising=False)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    studio = tmp_path / "studio"
    studio.mkdir()
    (studio / "seed.jsonl").write_text("{}\n")
    (studio / "out").symlink_to(tmp_path)
    (tmp_path / "secret.jsonl").write_text("{}\n")
    return tmp_path, str(studio / "studio.db")


def test_a_file_beside_the_database_or_in_the_uploads_is_readable(roots):
    tmp, db = roots
    assert readable_path(db, str(tmp / "studio" / "seed.jsonl")) == str(tmp / "studio" / "seed.jsonl")
    assert readable_path(db, str(tmp / "uploads" / "abc" / "seed.jsonl")).startswith(str(tmp / "uploads"))


@pytest.mark.parametrize(
    "crafted",
    ["/etc/passwd", "{studio}/../secret.jsonl", "{studio}/out/secret.jsonl", "{studio}/./../../etc/hostname"],
)
def test_a_path_outside_the_data_roots_is_refused_after_resolution(roots, crafted):
    tmp, db = roots
    with pytest.raises(ActionError, match="reads files only under"):
        readable_path(db, crafted.format(studio=tmp / "studio"))


def test_spa_data_roots_adds_a_folder(roots, monkeypatch):
    tmp, db = roots
    monkeypatch.setenv("SPA_DATA_ROOTS", str(tmp))
    assert readable_path(db, str(tmp / "secret.jsonl")) == str(tmp / "secret.jsonl")


@pytest.mark.parametrize("crafted", ["../escaped", "a/../../escaped", "out/escaped", "/etc/spa-escaped"])
def test_the_export_tab_confines_its_folder_to_the_export_root(roots, crafted):
    tmp, db = roots
    root = export_root(db)
    assert root == tmp / "studio"
    req = request_for(root, "p", "dataset", "jsonl", None, crafted, None, False, [], False)
    with pytest.raises(ExportError):
        destination(req.out, req.root)


def test_the_export_tab_takes_a_relative_folder_inside_the_root(roots):
    tmp, db = roots
    req = request_for(export_root(db), "p", "dataset", "jsonl", None, "exports/p/dataset", None, False, [], False)
    assert destination(req.out, req.root) == tmp / "studio" / "exports" / "p" / "dataset"
