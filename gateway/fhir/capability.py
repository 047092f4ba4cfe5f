"""``GET /fhir/metadata``: the CapabilityStatement, generated from the table the handlers
parse searches with (gateway.fhir.params.RESOURCES), so it says exactly what is served."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..auth.smart import SMART_SCOPES
from ..fhir_version import FHIR_VERSION
from .params import RESOURCES, RESULT_PARAMS

__all__ = ["capability_statement"]

SMART_EXT = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
_RESULT_DOC = {
    "_count": "page size, 1..1000 (default 100)",
    "_cursor": "opaque paging cursor from Bundle.link next/previous",
    "_format": "json (or application/fhir+json); xml is answered 406",
}


def _resource(r: Any) -> dict[str, Any]:
    params = [
        {"name": p.name, "definition": p.definition, "type": p.type, "documentation": p.doc}
        for p in r.params
    ]
    params += [
        {"name": n, "type": "special", "documentation": _RESULT_DOC[n]} for n in RESULT_PARAMS
    ]
    scopes = sorted({s for v in SMART_SCOPES.values() for s in v if f"/{r.type}." in s})
    out: dict[str, Any] = {
        "type": r.type,
        "interaction": [{"code": code} for code in r.interactions],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": params,
        "documentation": "SMART scopes: " + " ".join(scopes),
    }
    if r.sorts:
        out["documentation"] += "; _sort: " + ", ".join(r.sorts)
    return out


def capability_statement(base: str, published: str) -> dict[str, Any]:
    """The statement for a server at ``base`` (its origin), dated ``published``."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "kind": "instance",
        "software": {"name": "telegate", "version": __version__},
        "implementation": {"description": "telegate FHIR API", "url": f"{base}/fhir"},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Unknown search parameters are refused (400) unless the "
                "request says Prefer: handling=lenient. Errors are OperationOutcome.",
                "security": {
                    "extension": [
                        {
                            "url": SMART_EXT,
                            "extension": [
                                {"url": "token", "valueUri": f"{base}/oauth/token"},
                                {"url": "introspect", "valueUri": f"{base}/oauth/introspect"},
                            ],
                        }
                    ],
                    "cors": False,
                    "service": [
                        {
                            "coding": [{"system": SERVICE, "code": "SMART-on-FHIR"}],
                            "text": "SMART Backend Services (private_key_jwt), DPoP-bound "
                            "tokens, SMART v2 scopes; see /.well-known/smart-configuration",
                        }
                    ],
                },
                "resource": [_resource(r) for r in RESOURCES.values()],
            }
        ],
    }
