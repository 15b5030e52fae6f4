"""Where the studio may listen, and with what credentials (DESIGN.md §6: loopback by default; other
interfaces or a public share link only with authentication). Pure functions: no Gradio import, so a refusal
is immediate."""

from __future__ import annotations

import ipaddress
import os

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
AUTH_ENV = "SPA_AUTH"
PORT_ENV = "GRADIO_SERVER_PORT"


class UnsafeLaunch(ValueError):
    """The requested launch would expose the studio without authentication (or the settings are malformed)."""


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


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """'USER:PASSWORD' (from --auth, else the SPA_AUTH environment variable) -> (user, password)."""
    text = auth if auth else os.environ.get(AUTH_ENV, "")
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UnsafeLaunch(
            f"authentication must be USER:PASSWORD (from --auth or {AUTH_ENV}), with a non-empty user and password"
        )
    return user, password


def check_launch(host: str, share: bool, auth: str | None) -> tuple[str, tuple[str, str] | None]:
    """The host to bind and the credentials to require; raises UnsafeLaunch when the launch would expose the
    studio without authentication."""
    host = host or DEFAULT_HOST
    credentials = parse_auth(auth)
    if credentials is None and share:
        raise UnsafeLaunch(
            "refusing to create a public share link without authentication: "
            f"pass --auth USER:PASSWORD or set {AUTH_ENV}"
        )
    if credentials is None and not is_loopback(host):
        raise UnsafeLaunch(
            f"refusing to listen on {host} (not a loopback address) without authentication: "
            f"pass --auth USER:PASSWORD or set {AUTH_ENV}, or bind {DEFAULT_HOST}"
        )
    return host, credentials
