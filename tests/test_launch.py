"""launch.py's command line as DESIGN.md's contract and README state it."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import launch

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_bare_command_is_the_studio_and_takes_its_flags():
    args = launch.parser().parse_args(["--host", "0.0.0.0", "--port", "8000", "--auth", "u:p", "--db", "x.db"])
    assert args.func is launch.cmd_studio
    assert (args.host, args.port, args.auth, args.db, args.share, args.no_worker) == ("0.0.0.0", 8000, "u:p", "x.db",
                                                                                      False, False)


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


CONCRETE = sorted({m.strip() for m in re.findall(r"`(python launch\.py[^`]*)`", README)
                   if not re.search(r"[\[|]|FILE", m)} - {"python launch.py run"})  # the last: a name in prose


@pytest.mark.parametrize("command", CONCRETE)
def test_every_concrete_command_in_readme_parses(command):
    launch.parser().parse_args(shlex.split(command)[2:])


def test_readme_studio_flags_parse_on_the_bare_command():
    flags = re.findall(r"`(--(?:host|share|auth)[^`]*)`", README)
    assert {f.split()[0] for f in flags} >= {"--host", "--share", "--auth"}
    args = launch.parser().parse_args(shlex.split(" ".join(flags)))
    assert args.func is launch.cmd_studio and args.host == "0.0.0.0" and args.share


def test_every_subcommand_is_in_readme():
    sub = next(a for a in launch.parser()._actions if a.dest == "command")
    missing = [name for name in sub.choices if name != "studio" and f"python launch.py {name}" not in README]
    assert missing == []  # `studio` is the bare `python launch.py`
