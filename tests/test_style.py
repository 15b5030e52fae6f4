"""The one formatter and linter (ruff, configured in pyproject.toml) hold over the whole tree, so CI fails on a
file that drifts from them."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAS_RUFF = importlib.util.find_spec("ruff") is not None


@pytest.mark.skipif(not HAS_RUFF, reason="ruff is in requirements.txt; this checkout's environment lacks it")
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_the_tree_passes_ruff(command):
    result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_benchmark_scripts_run_from_anywhere_without_path_patches(tmp_path):
    patched = [p.name for p in (ROOT / "benchmarks").glob("*.py") if "sys.path.insert" in p.read_text()]
    assert patched == []
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "same_run.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "fixed-seed demo run" in result.stdout, result.stderr
