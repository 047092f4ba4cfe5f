"""A fresh PostgreSQL schema per test: a URL whose connections see only that schema
(``search_path``), dropped afterwards, so tests stay independent in any order."""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

__all__ = ["answers", "fresh_schema"]


def answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    options = urllib.parse.quote(f"-csearch_path={schema}")
    try:
        yield f"{base}{sep}options={options}"
    finally:
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')
