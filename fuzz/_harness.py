"""What every harness shares: instrumenting the code under test and handing a property to
atheris.

A harness module defines ``check(data: bytes) -> None``, which returns when the input was
accepted or refused the way the parser documents, and raises (an ``AssertionError`` or the
stray exception itself) when a property is broken. The same function is what
``tests/fuzz`` replays over the committed corpus, so a crash found once stays a test.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

#: Packages whose code is instrumented for coverage feedback by default.
OURS = ("ledger", "gateway")


@contextlib.contextmanager
def instrumented(name: str, *extra: str, hooks: tuple[str, ...] = ("str",)) -> Iterator[None]:
    """Import the code under test inside this block. Run as a fuzzer (``name`` is the
    harness's ``__name__``, ``"__main__"``), its bytecode (and that of the ``extra``
    packages) gets atheris's coverage probes; imported by a test, it is left alone
    (instrumenting costs seconds).

    ``hooks`` turns comparisons into feedback: ``"str"`` for ``startswith``/``endswith``,
    ``"RegEx"`` for patterns compiled inside the block (tile paths, SDP lines are regexes,
    not branches). The RegEx hook wraps every pattern in a proxy whose ``match`` takes no
    ``pos`` argument, which breaks ``tomllib``: a harness asks for what its code can bear.
    """
    if name != "__main__":
        yield
        return
    import atheris

    for hook in hooks:
        atheris.enabled_hooks.add(hook)
    with atheris.instrument_imports(include=[*OURS, *extra]):
        yield


def main(check: Callable[[bytes], None]) -> None:
    """Fuzz ``check`` with libFuzzer's command line (``-runs``, ``-max_total_time``, corpus
    directories...). atheris calls ``sys.exit`` when done."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def text(data: bytes) -> str:
    """Bytes as the str a server would have made of them (aiohttp decodes headers and
    WebSocket text as UTF-8; bytes that are not UTF-8 survive as surrogates)."""
    return data.decode("utf-8", "surrogateescape")
