"""The database URL as configuration sees it: checked and masked with the standard library
alone, so reading the config does not import SQLAlchemy."""

from __future__ import annotations

import urllib.parse

from ..errors import ConfigError

__all__ = ["check_url", "redact"]

SCHEMES = ("postgresql", "postgresql+psycopg")


def redact(url: str) -> str:
    """The URL with its password masked (``***``): what logs, errors and metrics may show."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[1]
            user = urllib.parse.quote(urllib.parse.unquote(parts.username or ""), safe="")
            parts = parts._replace(netloc=f"{user}:***@{host}")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if any(k == "password" for k, _ in query):
            # libpq takes the password as a query parameter too.
            masked = [(k, "***" if k == "password" else v) for k, v in query]
            parts = parts._replace(query=urllib.parse.urlencode(masked, safe="*"))
        return urllib.parse.urlunsplit(parts)
    except ValueError:
        return "<unparseable database URL>"


def check_url(url: str) -> None:
    """Raise ConfigError unless ``url`` is a PostgreSQL URL (the error shows no password)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        raise ConfigError(f"database_url is not a URL: {redact(url)}") from e
    if parts.scheme not in SCHEMES or not parts.path.strip("/"):
        raise ConfigError("database_url must be postgresql://user@host:port/database")
