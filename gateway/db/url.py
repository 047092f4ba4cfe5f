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
    if parts.netloc.count("@") > 1:
        # RFC 3986 3.2.1: "@" ends the user information. libpq takes the first one, so an
        # unencoded "@" in a password would send the rest of it to DNS as a host name.
        raise ConfigError("database_url: percent-encode '@' in the user or password as %40")
    try:
        from psycopg import conninfo  # the driver's own parser: unknown options, bad values

        conninfo.conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://", 1))
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    except Exception as e:  # psycopg.ProgrammingError; its text may quote the URL
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        password = parts.password or ""
        if password and password in why:
            why = "the driver cannot parse it"
        raise ConfigError(f"database_url {redact(url)}: {why}") from e
