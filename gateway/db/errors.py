"""What the database layer raises instead of the driver's errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..errors import Unavailable
from .url import redact

__all__ = ["DatabaseUnavailable", "reaching", "unreachable"]


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
    except sa.exc.SQLAlchemyError as e:
        if not unreachable(e):
            raise
        # The driver's first line says why; the statement and its parameters are left out.
        orig = getattr(e, "orig", None)
        lines = str(orig if orig is not None else e).strip().splitlines()
        why = lines[0] if lines else type(e).__name__
        text = where if isinstance(where, str) else where.render_as_string(hide_password=False)
        raise DatabaseUnavailable(
            f"cannot use the database {redact(text)}: {why}", headers={"Retry-After": "1"}
        ) from e


#: What SQLAlchemy's pool raises when every reconnection attempt of a checkout met a
#: connection the server closed at once (a server shutting down or starting up): not a
#: DBAPI error, so no other type says it.
_CHECKOUT_EXHAUSTED = "This connection is closed"


def unreachable(e: BaseException) -> bool:
    """Whether ``e`` says the database cannot be used now, as opposed to a bad statement:
    the driver's operational and interface errors (refused, reset, shut down, timed out,
    locked), any error SQLAlchemy took for a disconnect (``connection_invalidated``), and
    the pool's own: a checkout that found only closed connections, or no free connection
    within the pool timeout (every one is waiting on an unreachable server)."""
    if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return True
    if isinstance(e, sa.exc.DBAPIError):
        return bool(e.connection_invalidated)
    if isinstance(e, (sa.exc.DisconnectionError, sa.exc.TimeoutError)):
        return True
    return type(e) is sa.exc.InvalidRequestError and str(e) == _CHECKOUT_EXHAUSTED
