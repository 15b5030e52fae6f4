"""launch.py's command line as DESIGN.md's contract, README and docs/ state it: every command they show parses, every
subcommand has its row in README's table, and README opens with the two commands CI runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import launch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = {"README.md": README} | {f"docs/{p.name}": p.read_text(encoding="utf-8") for p in DOCS}
SUBCOMMANDS = set(next(a for a in launch.parser()._actions if a.dest == "command").choices)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
TEMPLATE = re.compile(r"[\[\]|…]|\.\.\.")  # `[--round N]`, `seed|pool|eval`, `...`: a form, not a command


def test_the_bare_command_is_the_studio_and_takes_its_flags():
    args = launch.parser().parse_args(["--host", "0.0.0.0", "--port", "8000", "--auth", "u:p", "--db", "x.db"])
    assert args.func is launch.cmd_studio
    assert (args.host, args.port, args.auth, args.db, args.share, args.no_worker) == (
        "0.0.0.0",
        8000,
        ["u:p"],
        "x.db",
        False,
        False,
    )


def test_studio_subcommand_and_bare_command_agree():
    bare = vars(launch.parser().parse_args(["--host", "0.0.0.0", "--share"]))
    named = vars(launch.parser().parse_args(["studio", "--host", "0.0.0.0", "--share"]))
    bare.pop("command"), named.pop("command")
    assert bare == named
    assert launch.parser().parse_args([]).host == "127.0.0.1"  # loopback unless asked


def test_db_before_a_subcommand_is_kept():
    assert launch.parser().parse_args(["--db", "a.db", "worker"]).db == "a.db"
    assert launch.parser().parse_args(["worker", "--db", "b.db"]).db == "b.db"
    assert launch.parser().parse_args(["worker"]).db == launch.DEFAULT_DB


def code_of(text: str) -> list[str]:
    """The lines of fenced blocks and the inline code spans of a Markdown page."""
    fenced = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return fenced + re.findall(r"`([^`]+)`", FENCE.sub("", text))


def launch_commands(text: str) -> list[str]:
    """Every `python launch.py ...` a page shows in code, up to a shell separator, whitespace collapsed."""
    found = []
    for code in code_of(text):
        for m in re.finditer(r"python launch\.py(?=\s|$)([^&;#]*)", code):
            found.append(" ".join(f"python launch.py{m.group(1)}".split()))
    return found


SHOWN = sorted({(page, cmd) for page, text in PAGES.items() for cmd in launch_commands(text)})
CONCRETE = [(page, cmd) for page, cmd in SHOWN if not TEMPLATE.search(cmd)]


def test_readme_and_docs_show_commands():
    assert {page for page, _ in CONCRETE} >= {"README.md", "docs/operations.md", "docs/labels.md"}
    assert len(CONCRETE) >= 15


@pytest.mark.parametrize("page, command", CONCRETE)
def test_every_concrete_command_in_readme_and_docs_parses(page, command):
    argv = shlex.split(command)[2:]
    if len(argv) == 1 and argv[0] in SUBCOMMANDS:
        return  # a subcommand named in prose ("the equivalent `python launch.py run` command")
    try:
        launch.parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: `{command}` does not parse against launch.py's argparser")


@pytest.mark.parametrize("page, command", SHOWN)
def test_every_command_shown_names_a_real_subcommand(page, command):
    argv = shlex.split(command)[2:]
    if argv and not argv[0].startswith("-"):  # `python launch.py --host ...` is the bare studio
        assert argv[0] in SUBCOMMANDS, f"{page}: `{command}`"


def test_readme_studio_flags_parse_on_the_bare_command():
    flags = re.findall(r"`(--(?:host|share|auth)[^`]*)`", README)
    assert {f.split()[0] for f in flags} >= {"--host", "--share", "--auth"}
    args = launch.parser().parse_args(shlex.split(" ".join(flags)))
    assert args.func is launch.cmd_studio and args.host == "0.0.0.0" and args.share


def test_every_subcommand_has_a_row_in_readmes_command_table():
    rows = set(re.findall(r"^\| `python launch\.py ?([a-z-]*)[^`]*` \|", README, re.MULTILINE))
    assert SUBCOMMANDS - rows == set()
    assert rows - SUBCOMMANDS <= {""}


def test_readme_opens_with_the_two_commands_ci_runs():
    first_block = FENCE.search(README).group(1).splitlines()
    assert README.startswith("# SPA Studio\n\n```")
    assert first_block == [
        "pip install -r requirements.txt && python launch.py",
        "pip install -r requirements.txt && python -m pytest -q tests",
    ]
    assert first_block[1] in (ROOT / ".ci" / "run").read_text()
