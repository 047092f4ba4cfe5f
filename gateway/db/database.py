"""Where the stores' tables live, chosen once from the config: a SQLite file per store under
the data dir (no URL: the embedded default), or one PostgreSQL database for every store."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from . import migrate
from .engine import postgres_engine, redact, sqlite_engine
from .errors import DatabaseUnavailable, reaching

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Database", "DatabaseUnavailable"]


class Database:
    """Engines for the stores, opened on first use and disposed by ``close``.

    Blocking (it connects and migrates): call from a thread.
    """

    def __init__(self, data_dir: Path, url: str | None = None) -> None:
        self.data_dir = data_dir
        self.url = url
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._copy_checked = False

    @classmethod
    def from_config(cls, config: Config) -> Database:
        return cls(config.data_dir, config.database_url)

    @property
    def embedded(self) -> bool:
        return self.url is None

    def describe(self) -> str:
        """Where the data is, fit for logs (the password is masked)."""
        return f"sqlite files in {self.data_dir}" if self.url is None else redact(self.url)

    def path(self, name: str) -> Path:
        """The embedded store's file (``<data_dir>/<name>.db``)."""
        return self.data_dir / f"{name}.db"

    def engine(self, name: str) -> Engine:
        """The engine for store ``name``: its own file, or the one shared database."""
        key = name if self.url is None else ""
        with self._lock:
            if key not in self._engines:
                self._engines[key] = (
                    sqlite_engine(self.path(name))
                    if self.url is None
                    else postgres_engine(self.url)
                )
            return self._engines[key]

    def open(self, name: str) -> Engine:
        """The engine for store ``name``, its schema ready: the embedded default migrates
        itself (zero set-up); a shared PostgreSQL database is only checked, since replicas
        of different releases must not race to change it. Raises SchemaMismatch."""
        engine = self.engine(name)
        with reaching(self.describe()):
            if self.url is None:
                migrate.upgrade(engine, name)
            else:
                self._check_copied(engine)
                migrate.check(engine, name)
        return engine

    def _check_copied(self, engine: Engine) -> None:
        """Refuse (CopyUnfinished) a database that a ``db copy`` began and did not finish,
        before its half-made schema is reported as merely old. Checked once per Database."""
        if self._copy_checked:
            return
        from .copy import check_finished  # the copier imports the ledger: only when needed

        check_finished(engine, self.describe())
        self._copy_checked = True

    def upgrade(self) -> dict[str, str]:
        """Migrate every store to this release's head; returns each one's revision."""
        with reaching(self.describe()):
            return {name: migrate.upgrade(self.engine(name), name) for name in self.stores()}

    def stores(self) -> list[str]:
        """The stores kept here: all of them in a shared database; in a data dir, those
        whose embedded file lives there (not the witness server's)."""
        return [
            name for name, s in migrate.SCHEMAS.items() if self.url is not None or s.in_data_dir
        ]

    def current(self) -> dict[str, str | None]:
        """Every store's revision (None: not created). Creates no file."""
        with reaching(self.describe()):
            if self.url is not None:
                return migrate.current(self.engine(""))
            out: dict[str, str | None] = {}
            for name in self.stores():
                exists = self.path(name).exists()
                out[name] = migrate.current(self.engine(name))[name] if exists else None
            return out

    def check(self) -> None:
        """Raise SchemaMismatch unless every store is at this release's head."""
        with reaching(self.describe()):
            if self.url is not None:
                self._check_copied(self.engine(""))
            for name in self.stores():
                migrate.check(self.engine(name), name)

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for e in engines:
            e.dispose()
