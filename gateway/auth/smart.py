"""SMART App Launch v2 scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)
for the FHIR API under ``/fhir``: which a role may be issued, and whether a granted set
allows an interaction on a resource type.

A scope is ``<context>/<ResourceType>.<permissions>``: context ``patient`` (the caller's own
record: the patient role), ``user`` (what the user may see: a provider, through each
patient's consent; an auditor) or ``system`` (a backend service: an auditor's tool). v2
permissions are letters of ``cruds`` in that order (this API implements ``r`` read and ``s``
search); the v1 forms ``.read`` and ``.*`` are accepted as ``rs``. A scope decides which
kinds of resource a token reaches; consent still decides each patient's data at read time.
"""

from __future__ import annotations

import re

__all__ = ["ROLE_CONTEXTS", "SMART_SCOPES", "allows"]

#: The SMART contexts each role acts in.
ROLE_CONTEXTS: dict[str, tuple[str, ...]] = {
    "patient": ("patient",),
    "provider": ("user",),
    "auditor": ("user", "system"),
}
#: The resource types each role reaches through ``/fhir`` (gateway.fhir implements them).
_RESOURCES: dict[str, tuple[str, ...]] = {
    "patient": ("Observation", "Provenance", "Consent", "AuditEvent"),
    "provider": ("Observation", "Provenance", "Consent"),
    "auditor": ("AuditEvent", "Consent"),
}

#: What each role may be issued, v2 (``.rs``) and v1 (``.read``) forms.
SMART_SCOPES: dict[str, tuple[str, ...]] = {
    role: tuple(
        f"{ctx}/{res}.{perm}"
        for ctx in ROLE_CONTEXTS[role]
        for res in _RESOURCES[role]
        for perm in ("rs", "read")
    )
    for role in _RESOURCES
}

_SCOPE = re.compile(r"(patient|user|system)/([A-Za-z]{1,64}|\*)\.([a-z*]{1,5})", re.ASCII)
_V2 = re.compile(r"c?r?u?d?s?", re.ASCII)


def _permissions(perm: str) -> frozenset[str]:
    if perm in ("read", "*"):
        return frozenset("rs")
    if _V2.fullmatch(perm):
        return frozenset(perm)
    return frozenset()


def allows(scopes: frozenset[str], role: str, resource: str, interaction: str) -> bool:
    """Whether a token's ``scopes`` let a caller of ``role`` do ``interaction`` (``r`` read
    by id, ``s`` search) on ``resource``, in a context the role acts in."""
    contexts = ROLE_CONTEXTS.get(role, ())
    for scope in scopes:
        m = _SCOPE.fullmatch(scope)
        if m is None or m[1] not in contexts or m[2] not in (resource, "*"):
            continue
        if interaction in _permissions(m[3]):
            return True
    return False
