"""Run ``telegate ARGS`` and SIGKILL it at its K-th file-system step inside TARGET (run as
a script by tests/faults/test_kill9.py, never imported by pytest).

    python -m tests.faults.crashpoint K TARGET ARGS...
    python -m tests.faults.crashpoint before|after TARGET ARGS...

TARGET is ``module:Class.method`` or ``module:function``. While a call of it runs, every
``open``/``os.open``, ``os.replace``/``rename`` and ``os.unlink`` counts as two steps (just
before and just after it); at step K the process sends itself SIGKILL, as a power cut or an
OOM kill would stop it there: no ``finally``, no flush, no cleanup. A K beyond the steps
taken lets the command finish. ``before``/``after`` kill the process as TARGET is called or
as it returns (its first call), for steps that are not file-system calls (a SQLite commit
in a running gateway). The fault-injection method of SQLite's own crash tests
(https://sqlite.org/testing.html#crash_testing), with the process boundary kept real.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

_state = {"armed": 0, "steps": 0, "at": 0}


def _step() -> None:
    if _state["armed"]:
        _state["steps"] += 1
        if _state["steps"] == _state["at"]:
            os.kill(os.getpid(), signal.SIGKILL)


def _counted(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def g(*a: Any, **kw: Any) -> Any:
        _step()
        try:
            return f(*a, **kw)
        finally:
            _step()  # also after a call that raised (an unlink of a missing file)

    return g


def _armed(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def g(*a: Any, **kw: Any) -> Any:
        _state["armed"] += 1
        try:
            return f(*a, **kw)
        finally:
            _state["armed"] -= 1

    return g


def _kill(f: Callable[..., Any], when: str) -> Callable[..., Any]:
    @functools.wraps(f)
    def g(*a: Any, **kw: Any) -> Any:
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        r = f(*a, **kw)
        os.kill(os.getpid(), signal.SIGKILL)
        return r

    return g


def main() -> int:
    at, target, *args = sys.argv[1:]
    _state["at"] = int(at) if at.isdigit() else 0
    module, _, name = target.partition(":")
    owner: Any = importlib.import_module(module)
    *path, attr = name.split(".")
    for p in path:
        owner = getattr(owner, p)
    f = getattr(owner, attr)
    if at in ("before", "after"):
        setattr(owner, attr, _kill(f, at))
    else:
        setattr(owner, attr, _armed(f))
    for mod, fn in ((io, "open"), (os, "open"), (os, "replace"), (os, "rename"), (os, "unlink")):
        setattr(mod, fn, _counted(getattr(mod, fn)))
    import builtins

    builtins.open = io.open
    from gateway.cli import main as telegate

    rc = telegate(args)
    print(f"crashpoint: finished after {_state['steps']} steps", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
