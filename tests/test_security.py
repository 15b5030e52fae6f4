"""Who may sign in (app/security.py): salted PBKDF2 hashes, repeatable --auth and SPA_AUTH, users files whose
errors name the file and the line, and `launch.py hash-password`. Clear passwords are never printed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import launch
from app import security
from app.security import Credentials, PasswordHash, UnsafeLaunch

ROOT = Path(__file__).resolve().parents[1]
FAST = security.MIN_ITERATIONS  # tests hash with the fewest iterations a users file accepts


def users_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "users.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_hash_is_salted_pbkdf2_sha256_and_checks_only_its_own_password():
    first, second = PasswordHash.of("s3cret", FAST), PasswordHash.of("s3cret", FAST)
    assert first.salt != second.salt and first.digest != second.digest  # a fresh salt each time
    text = str(first)
    scheme, iterations, salt, hexdigest = text.split("$")
    assert (scheme, int(iterations)) == ("pbkdf2_sha256", FAST) and "s3cret" not in text
    # the digest is PBKDF2-HMAC-SHA256 of the password with that salt, as any other implementation computes it
    assert hexdigest == hashlib.pbkdf2_hmac("sha256", b"s3cret", salt.encode(), FAST).hex()
    parsed = PasswordHash.parse(text)
    assert parsed == first and parsed.matches("s3cret")
    assert not parsed.matches("s3cret ") and not parsed.matches("S3cret") and not parsed.matches("")
    assert PasswordHash.of("x").iterations == security.HASH_ITERATIONS == 600_000


def test_credentials_check_user_and_password_together():
    creds = Credentials({"ana": PasswordHash.of("one", FAST), "ben": PasswordHash.of("two", FAST)})
    assert creds.users == ("ana", "ben")
    assert creds.check("ana", "one") and creds.check("ben", "two")
    assert not creds.check("ana", "two") and not creds.check("ben", "one")
    assert not creds.check("carl", "one") and not creds.check("", "") and not creds.check("ana", None)
    assert "one" not in repr(creds) and "two" not in repr(creds)


def test_auth_is_repeatable_and_spa_auth_holds_several_accounts(monkeypatch):
    monkeypatch.delenv(security.AUTH_ENV, raising=False)
    creds = security.load_credentials(["ana:pw-a", "ben:pw:with:colons"])
    assert creds.users == ("ana", "ben") and creds.check("ben", "pw:with:colons") and creds.check("ana", "pw-a")
    monkeypatch.setenv(security.AUTH_ENV, "carl:c1,dora:d2")
    env = security.load_credentials(None)
    assert env.users == ("carl", "dora") and env.check("dora", "d2") and not env.check("dora", "c1")
    assert security.load_credentials(["ana:x"]).users == ("ana",)  # --auth given: SPA_AUTH is not read
    monkeypatch.delenv(security.AUTH_ENV)
    assert security.load_credentials(None) is None and security.load_credentials([]) is None


@pytest.mark.parametrize(
    "entries, message",
    [
        (["ana:one", "nopassword"], "--auth entry 2: authentication must be USER:PASSWORD"),
        (["ana:one", ":pw"], "--auth entry 2: authentication must be USER:PASSWORD"),
        (["ana:"], "--auth entry 1: authentication must be USER:PASSWORD"),
        (["ana:one", "ana:two"], "--auth entry 2: user 'ana' is given twice"),
        (["studio:pw"], "--auth entry 1: user name 'studio' is reserved"),
        (["api:pw"], "--auth entry 1: user name 'api' is reserved"),
        (["an a:pw"], "--auth entry 1: user name 'an a' must be 1-64 letters"),
    ],
)
def test_malformed_auth_entries_are_refused_by_number_without_their_password(entries, message, monkeypatch):
    monkeypatch.delenv(security.AUTH_ENV, raising=False)
    with pytest.raises(UnsafeLaunch) as refused:
        security.load_credentials(entries)
    assert message in str(refused.value)
    for secret in ("one", "two"):
        assert f":{secret}" not in str(refused.value)


def test_a_users_file_is_read_with_comments_and_blank_lines(tmp_path, monkeypatch):
    monkeypatch.delenv(security.AUTH_ENV, raising=False)
    path = users_file(
        tmp_path,
        "# the review team",
        security.hash_line("ana", "alpha", FAST),
        "",
        "  " + security.hash_line("ben", "beta", FAST) + "  ",
    )
    creds = security.load_credentials(None, path)
    assert creds.users == ("ana", "ben") and creds.check("ana", "alpha") and creds.check("ben", "beta")
    both = security.load_credentials(["carl:gamma"], path)
    assert both.users == ("ana", "ben", "carl") and both.check("carl", "gamma")
    with pytest.raises(UnsafeLaunch, match=f"user 'ana' is in both --auth .* and users file {path}"):
        security.load_credentials(["ana:other"], path)


GOOD = security.hash_line("ana", "alpha", FAST).split(":", 1)[1]


@pytest.mark.parametrize(
    "bad, line, message",
    [
        ("ben", 3, "expected user:HASH"),
        ("ben:plain-password", 3, "the hash must be pbkdf2_sha256$ITERATIONS$SALT$HEX"),
        ("ben:md5$1$salt$00", 3, "the hash must be pbkdf2_sha256"),
        ("ben:pbkdf2_sha256$12$salt$" + "0" * 64, 3, "iterations must be a whole number of at least 10000"),
        ("ben:pbkdf2_sha256$many$salt$" + "0" * 64, 3, "iterations must be a whole number"),
        ("ben:pbkdf2_sha256$20000$$" + "0" * 64, 3, "salt is empty"),
        ("ben:pbkdf2_sha256$20000$salt$zz", 3, "digest is not hexadecimal"),
        ("ben:pbkdf2_sha256$20000$salt$00ff", 3, "digest must be 64 hexadecimal digits"),
        ("ana:" + GOOD, 3, "user 'ana' is given twice"),
        ("studio:" + GOOD, 3, "user name 'studio' is reserved"),
    ],
)
def test_a_malformed_users_file_names_the_file_and_the_line(tmp_path, bad, line, message):
    path = users_file(tmp_path, "# team", "ana:" + GOOD, bad, "carl:" + GOOD)
    with pytest.raises(UnsafeLaunch) as refused:
        security.read_users_file(path)
    assert f"users file {path}, line {line}: " in str(refused.value)
    assert message in str(refused.value)


def test_a_users_file_that_is_missing_or_empty_is_refused(tmp_path):
    with pytest.raises(UnsafeLaunch, match="users file .*missing.txt: cannot be read"):
        security.read_users_file(tmp_path / "missing.txt")
    with pytest.raises(UnsafeLaunch, match="users file .*users.txt: no accounts in it"):
        security.read_users_file(users_file(tmp_path, "# nobody yet", ""))


def test_check_launch_accepts_a_users_file_off_loopback_and_refuses_nothing_at_all(tmp_path, monkeypatch):
    monkeypatch.delenv(security.AUTH_ENV, raising=False)
    path = users_file(tmp_path, security.hash_line("ana", "alpha", FAST))
    host, creds = security.check_launch("0.0.0.0", True, None, path)
    assert host == "0.0.0.0" and creds.users == ("ana",)
    with pytest.raises(UnsafeLaunch, match="refusing to listen on 0.0.0.0"):
        security.check_launch("0.0.0.0", False, None)
    assert security.check_launch("127.0.0.1", False, None) == ("127.0.0.1", None)


def test_actor_of_a_request_is_its_user_else_the_fallback():
    class Request:
        def __init__(self, username):
            self.username = username

    assert security.actor_of(Request("ana")) == "ana" and security.actor_of(Request(" ben ")) == "ben"
    assert security.actor_of(Request(None)) == "studio" and security.actor_of(None, "api") == "api"


def test_the_command_line_takes_several_accounts_and_a_users_file():
    args = launch.parser().parse_args(["--auth", "ana:a", "--auth", "ben:b", "--users", "team.txt"])
    assert args.auth == ["ana:a", "ben:b"] and args.users == "team.txt"
    named = launch.parser().parse_args(["studio", "--auth", "ana:a", "--auth", "ben:b"])
    assert named.auth == ["ana:a", "ben:b"] and named.users is None


def test_hash_password_prints_a_line_the_users_file_accepts_and_never_the_password(tmp_path):
    done = subprocess.run(
        [sys.executable, "launch.py", "hash-password", "ana", "--iterations", str(FAST)],
        cwd=ROOT,
        input="correct horse\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("ana:pbkdf2_sha256$10000$") and "correct horse" not in done.stdout + done.stderr
    creds = security.read_users_file(users_file(tmp_path, line))
    assert creds["ana"].matches("correct horse") and not creds["ana"].matches("correct horse\n")
    refused = subprocess.run(
        [sys.executable, "launch.py", "hash-password", "ana"], cwd=ROOT, input="\n", capture_output=True, text=True
    )
    assert refused.returncode == 2 and "the password is empty" in refused.stderr and not refused.stdout


def test_a_named_person_must_be_an_account_where_there_are_accounts():
    assert security.known_person(" ana ", ("ana", "ben")) == "ana"
    with pytest.raises(ValueError, match="unknown person 'carl': the studio's accounts are ana, ben"):
        security.known_person("carl", ("ana", "ben"))
    assert security.known_person("carl", ()) == "carl"  # no accounts: any well-formed name
    with pytest.raises(ValueError, match="person '' must be 1-64 letters"):
        security.known_person("", ())
