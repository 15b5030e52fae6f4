"""Where the studio may listen, and who may sign in (DESIGN.md §6: loopback by default; other interfaces or a
public share link only with authentication). Pure functions and records: no Gradio import, so a refusal is
immediate.

Accounts come from `--auth USER:PASSWORD` (repeatable; else SPA_AUTH, comma-separated) and from a users file
(`--users FILE`, one `user:pbkdf2_sha256$ITERATIONS$SALT$HEX` a line, made by `launch.py hash-password`). Clear
passwords are hashed as they are read and never kept, stored, printed or logged; a check recomputes the salted
PBKDF2-SHA256 and compares with hmac.compare_digest."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
AUTH_ENV = "SPA_AUTH"
PORT_ENV = "GRADIO_SERVER_PORT"
STUDIO_ACTOR = "studio"  # who labels in the browser where the studio runs without authentication
API_ACTOR = "api"  # who labels through the API where the studio runs without authentication
RESERVED_USERS = (STUDIO_ACTOR, API_ACTOR)  # an account of that name would share their undo
USER_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256; 0.3 s a check on this machine
MIN_ITERATIONS = 10_000


class UnsafeLaunch(ValueError):
    """The requested launch would expose the studio without authentication (or the settings are malformed)."""


def actor_of(request, fallback: str = STUDIO_ACTOR) -> str:
    """The person a Gradio request (gr.Request) comes from: the signed-in user where the studio runs with
    authentication, else `fallback` ("studio" for the browser, "api" for the API)."""
    return (getattr(request, "username", None) or "").strip() or fallback


def _pbkdf2(password: str, salt: str, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt.encode("utf-8"), iterations)


@dataclass(frozen=True)
class PasswordHash:
    """A salted PBKDF2-SHA256 hash, written `pbkdf2_sha256$ITERATIONS$SALT$HEX`."""

    iterations: int
    salt: str
    digest: bytes = field(repr=False)

    @classmethod
    def of(cls, password: str, iterations: int = HASH_ITERATIONS, salt: str | None = None) -> PasswordHash:
        if not password:
            raise ValueError("the password is empty")
        if iterations < MIN_ITERATIONS:
            raise ValueError(f"iterations must be at least {MIN_ITERATIONS}")
        salt = salt or secrets.token_hex(16)
        return cls(iterations, salt, _pbkdf2(password, salt, iterations))

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Read `pbkdf2_sha256$ITERATIONS$SALT$HEX`; ValueError says which part is wrong."""
        parts = text.strip().split("$")
        if len(parts) != 4 or parts[0] != HASH_SCHEME:
            raise ValueError(f"the hash must be {HASH_SCHEME}$ITERATIONS$SALT$HEX (make one: launch.py hash-password)")
        _, iterations, salt, hexdigest = parts
        if not iterations.isdigit() or int(iterations) < MIN_ITERATIONS:
            raise ValueError(f"the hash's iterations must be a whole number of at least {MIN_ITERATIONS}")
        if not salt or "$" in salt:
            raise ValueError("the hash's salt is empty")
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            raise ValueError("the hash's digest is not hexadecimal") from None
        if len(digest) != 32:
            raise ValueError("the hash's digest must be 64 hexadecimal digits (SHA-256)")
        return cls(int(iterations), salt, digest)

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(_pbkdf2(password, self.salt, self.iterations), self.digest)

    def __str__(self) -> str:
        return f"{HASH_SCHEME}${self.iterations}${self.salt}${self.digest.hex()}"


@dataclass(frozen=True)
class Credentials:
    """The accounts that may sign in, as password hashes. `check` is what Gradio's launch(auth=...) calls."""

    accounts: dict[str, PasswordHash]

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(sorted(self.accounts))

    def check(self, user: str, password: str) -> bool:
        """True for a known user with the right password. An unknown user costs the same hash, so the time a
        refusal takes does not tell whether the account exists."""
        known = self.accounts.get(user)
        stored = known or _DECOY
        matched = stored.matches(password or "")
        return known is not None and matched


_DECOY = PasswordHash(HASH_ITERATIONS, "decoy", bytes(32))


def check_user(user: str) -> str:
    if not USER_PATTERN.fullmatch(user):
        raise ValueError(f"user name {user!r} must be 1-64 letters, digits or . _ @ -")
    if user in RESERVED_USERS:
        raise ValueError(f"user name {user!r} is reserved (it names labels given without authentication)")
    return user


def known_person(name: str, people: tuple[str, ...]) -> str:
    """A person an API call names (a reviewer to assign, say): one of the accounts where the studio has any, else
    any well-formed name. ValueError names the unknown person and the accounts."""
    name = (name or "").strip()
    if people:
        if name not in people:
            raise ValueError(f"unknown person {name!r}: the studio's accounts are {', '.join(people)}")
        return name
    if not USER_PATTERN.fullmatch(name):
        raise ValueError(f"person {name!r} must be 1-64 letters, digits or . _ @ -")
    return name


def hash_line(user: str, password: str, iterations: int = HASH_ITERATIONS) -> str:
    """A users-file line for one account: `user:pbkdf2_sha256$...`."""
    return f"{check_user(user)}:{PasswordHash.of(password, iterations)}"


def parse_auth(auth: str | list[str] | None) -> dict[str, PasswordHash]:
    """'USER:PASSWORD' entries (from --auth, repeatable, else SPA_AUTH's comma-separated list) -> hashed
    accounts. Errors name the entry, never its password."""
    if isinstance(auth, str):
        auth = [auth]
    where = "--auth"
    if not auth:
        env = os.environ.get(AUTH_ENV, "")
        auth, where = ([e for e in env.split(",")] if env.strip() else []), AUTH_ENV
    accounts: dict[str, PasswordHash] = {}
    for n, entry in enumerate(auth, 1):
        user, sep, password = entry.partition(":")
        user = user.strip()
        if not sep or not user or not password:
            raise UnsafeLaunch(
                f"{where} entry {n}: authentication must be USER:PASSWORD, with a non-empty user and password"
            )
        try:
            _add(accounts, check_user(user), PasswordHash.of(password))
        except ValueError as e:
            raise UnsafeLaunch(f"{where} entry {n}: {e}") from None
    return accounts


def read_users_file(path: str | Path) -> dict[str, PasswordHash]:
    """A users file: `user:HASH` a line; blank lines and lines starting with # are skipped. Any malformed line
    refuses the whole file, naming the file and the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UnsafeLaunch(f"users file {path}: cannot be read ({e.__class__.__name__}: {e})") from None
    accounts: dict[str, PasswordHash] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        user, sep, hashed = text.partition(":")
        try:
            if not sep:
                raise ValueError("expected user:HASH")
            _add(accounts, check_user(user.strip()), PasswordHash.parse(hashed))
        except ValueError as e:
            raise UnsafeLaunch(f"users file {path}, line {number}: {e}") from None
    if not accounts:
        raise UnsafeLaunch(f"users file {path}: no accounts in it")
    return accounts


def _add(accounts: dict[str, PasswordHash], user: str, hashed: PasswordHash) -> None:
    if user in accounts:
        raise ValueError(f"user {user!r} is given twice")
    accounts[user] = hashed


def load_credentials(auth: str | list[str] | None = None, users_file: str | Path | None = None) -> Credentials | None:
    """Every account of --auth (or SPA_AUTH) and of the users file; None when there is none."""
    accounts = parse_auth(auth)
    if users_file:
        for user, hashed in read_users_file(users_file).items():
            if user in accounts:
                raise UnsafeLaunch(f"user {user!r} is in both --auth (or {AUTH_ENV}) and users file {users_file}")
            accounts[user] = hashed
    return Credentials(accounts) if accounts else None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and 'localhost'. Anything else, including 0.0.0.0 and '::', reaches other machines."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def resolve_port(port: int | None) -> int:
    """--port, else GRADIO_SERVER_PORT, else 7860."""
    if port is not None:
        value = port
    else:
        text = os.environ.get(PORT_ENV, "").strip()
        if not text:
            return DEFAULT_PORT
        try:
            value = int(text)
        except ValueError:
            raise UnsafeLaunch(f"{PORT_ENV}={text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise UnsafeLaunch(f"port {value} is out of range 1-65535")
    return value


def check_launch(
    host: str, share: bool, auth: str | list[str] | None, users_file: str | Path | None = None
) -> tuple[str, Credentials | None]:
    """The host to bind and the accounts that may sign in; raises UnsafeLaunch when the launch would expose the
    studio without authentication or an account is malformed."""
    host = host or DEFAULT_HOST
    credentials = load_credentials(auth, users_file)
    if credentials is None and share:
        raise UnsafeLaunch(
            "refusing to create a public share link without authentication: "
            f"pass --auth USER:PASSWORD, --users FILE or set {AUTH_ENV}"
        )
    if credentials is None and not is_loopback(host):
        raise UnsafeLaunch(
            f"refusing to listen on {host} (not a loopback address) without authentication: "
            f"pass --auth USER:PASSWORD, --users FILE or set {AUTH_ENV}, or bind {DEFAULT_HOST}"
        )
    return host, credentials
