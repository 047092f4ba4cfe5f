"""What each of aiohttp's two request parsers (the C one, used when built, and the
pure-Python fallback) raises for an oversized or malformed head, mapped to its problem:
414 for the request line, 431 for header fields, 400 for the rest. Real parsers, real
bytes; the served answers are in test_slow.py and test_serve.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import http_parser
from aiohttp.http_exceptions import BadHttpMessage

from gateway.limits.heads import head_problem

LIMIT = 256
PARSERS = [
    pytest.param(http_parser.HttpRequestParserPy, id="python"),
    pytest.param(
        getattr(http_parser, "HttpRequestParserC", None),
        id="c",
        marks=pytest.mark.skipif(
            getattr(http_parser, "HttpRequestParserC", None) is None,
            reason="aiohttp built without its C parser",
        ),
    ),
]
CASES = [
    ("request line", b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("absolute URL", b"GET http://x/" + b"a" * 600 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 600 + b"\r\n\r\n", 431),
    ("header value like a path", b"GET / HTTP/1.1\r\nX-A: /" + b"b" * 600 + b"\r\n\r\n", 431),
    ("header name", b"GET / HTTP/1.1\r\nHost: x\r\nX-" + b"n" * 600 + b": 1\r\n\r\n", 431),
    (
        "too many fields",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n",
        431,
    ),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("bad version", b"GET / HTTP/9.x\r\nHost: x\r\n\r\n", 400),
]


def _refusal(parser_cls: Any, data: bytes) -> BadHttpMessage:
    loop = asyncio.new_event_loop()
    try:
        parser = parser_cls(
            None, loop, 2**16, max_line_size=LIMIT, max_field_size=LIMIT, max_headers=10
        )
        with pytest.raises(BadHttpMessage) as e:
            parser.feed_data(data)
        return e.value
    finally:
        loop.close()


@pytest.mark.parametrize("parser_cls", PARSERS)
@pytest.mark.parametrize(("name", "data", "status"), CASES, ids=[c[0] for c in CASES])
def test_each_refused_head_gets_its_status(
    parser_cls: Any, name: str, data: bytes, status: int
) -> None:
    assert head_problem(_refusal(parser_cls, data))[0] == status, name
