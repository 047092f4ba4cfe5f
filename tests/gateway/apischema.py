"""Checking a live answer against its operation's schema in /openapi.json, with
``jsonschema`` (JSON Schema 2020-12, OpenAPI 3.1's dialect); the ``$ref``s resolve in the
document itself."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.openapi import SPEC

__all__ = ["check_body"]

_SPEC_URI = "urn:telegate:openapi"
_REGISTRY: Registry[Any] = Registry().with_resource(
    _SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _template(method: str, path: str) -> str:
    """The documented path ``path`` is an instance of (a literal segment beats a parameter:
    /v1/sessions/waiting is not /v1/sessions/{id})."""
    matches = []
    for template, ops in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if template.endswith("{path}"):
            pattern = pattern.replace("[^/]+$", ".+$")
        if method in ops and re.match(pattern, path):
            matches.append(template)
    assert matches, f"{method.upper()} {path} is not documented"
    return min(matches, key=lambda t: t.count("{"))


def check_body(method: str, path: str, status: int, content_type: str, body: Any) -> str:
    """Validate one live answer against its operation's schema; returns the operation name.
    Raises jsonschema.ValidationError on any mismatch."""
    template = _template(method.lower(), path)
    responses = SPEC["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented"
    content = responses[str(status)].get("content", {})
    assert content_type in content, f"{method} {template} {status}: {content_type} undocumented"
    ref = _pointer("paths", template, method.lower(), "responses", str(status), "content")
    ref += "/" + _pointer(content_type, "schema")
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{_SPEC_URI}#/{ref}"},
        registry=_REGISTRY,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(body)
    return f"{method.upper()} {template} {status}"
