"""What the database layer raises instead of the driver's errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..errors import Unavailable
from .url import redact

__all__ = ["DatabaseUnavailable", "reaching"]


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached, refused the connection, or is locked: a 503 the
    client may retry, never a 500 and never an answer without the write. The detail (which
    database, the driver's reason) goes to the log and the CLI, never to an HTTP client."""

    public_detail = "the database cannot be used now; retry later"


@contextmanager
def reaching(where: str | URL) -> Iterator[None]:
    """Turn the driver's operational errors (connection refused or lost, authentication,
    ``database is locked``) into DatabaseUnavailable naming ``where``, its password masked
    (rendered only when there is an error: this wraps every query)."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
        # The driver's first line says why; the statement and its parameters are left out.
        why = str(e.orig).strip().splitlines()[0] if e.orig is not None else type(e).__name__
        text = where if isinstance(where, str) else where.render_as_string(hide_password=False)
        raise DatabaseUnavailable(
            f"cannot use the database {redact(text)}: {why}", headers={"Retry-After": "1"}
        ) from e
