"""Readings as FHIR R4 Observations, both ways.

In: a Bundle of Observations (vital-signs profile codes) maps onto the same raw readings a
``vitals+json`` batch carries, so one validator judges both. Out: normalised readings as
Observations following the FHIR vital-signs profiles, in a searchset Bundle. Built as plain
dicts; the tests validate them with ``fhir.resources``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import BadRequest
from ..jsonio import loads
from .batch import BATCH_ID, InvalidBatch
from .codes import BP_PANEL, BP_PANEL_DISPLAY, CODES

__all__ = ["bundle_readings", "observation", "searchset"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SUBJECT_SYSTEM = "urn:telegate:subject"
BATCH_SYSTEM = "urn:telegate:vitals-batch"
# FHIR R4 (4.0.1) vital signs profiles (https://hl7.org/fhir/R4/observation-vitalsigns.html):
# each fixes one LOINC coding in Observation.code. 59408-5 (SpO2 by pulse oximetry) is a more
# specific code that may stand beside the oxygensat profile's 2708-6, never replace it.
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
VITALSIGNS = PROFILE + "vitalsigns"
_PROFILES: dict[str, tuple[str, str]] = {
    "8867-4": ("heartrate", "8867-4"),
    "59408-5": ("oxygensat", "2708-6"),
    "2708-6": ("oxygensat", "2708-6"),
    "8310-5": ("bodytemp", "8310-5"),
    "9279-1": ("resprate", "9279-1"),
    "29463-7": ("bodyweight", "29463-7"),
    BP_PANEL: ("bp", BP_PANEL),
}
#: Codes of the table outside the vital-signs value set: laboratory results, no profile.
_LABORATORY = frozenset({"15074-8"})
STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})


def _loinc(concept: Any) -> str | None:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    codes = [
        str(c["code"])
        for c in (codings if isinstance(codings, list) else [])
        if isinstance(c, dict) and c.get("system") == LOINC and isinstance(c.get("code"), str)
    ]
    # A profile's fixed coding stands first beside the more specific code it stands for
    # (2708-6 then 59408-5, as observation() writes it): the reading is the specific one.
    fixed = {_PROFILES[c][1] for c in codes if _PROFILES.get(c, ("", c))[1] != c}
    return next((c for c in codes if c not in fixed), None)


def _quantity(q: Any) -> tuple[Any, Any]:
    if not isinstance(q, dict) or q.get("system") != UCUM:
        raise ValueError("valueQuantity needs system http://unitsofmeasure.org and a UCUM code")
    return q.get("code"), q.get("value")


def _reading(obs: Any) -> dict[str, Any]:
    """One Observation as a raw reading (validated afterwards like any other)."""
    if not isinstance(obs, dict) or obs.get("resourceType") != "Observation":
        raise ValueError("each entry is an Observation")
    if not isinstance(obs.get("status"), str) or obs["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(sorted(STATUSES))}")
    code = _loinc(obs.get("code"))
    if code is None:
        raise ValueError("code needs a LOINC coding (system http://loinc.org)")
    raw: dict[str, Any] = {"code": code, "time": obs.get("effectiveDateTime")}
    if code == BP_PANEL:
        comps = obs.get("component")
        if not isinstance(comps, list):
            raise ValueError(f"{BP_PANEL} needs its components")
        raw["components"] = []
        for c in comps:
            unit, value = _quantity(c.get("valueQuantity") if isinstance(c, dict) else None)
            raw["components"].append({"code": _loinc(c.get("code")), "unit": unit, "value": value})
        return raw
    raw["unit"], raw["value"] = _quantity(obs.get("valueQuantity"))
    return raw


def bundle_readings(payload: bytes) -> tuple[str, list[Any], str | None]:
    """batch_id (the Bundle's identifier), raw readings and the subject named, if any.
    Raises BadRequest for a malformed Bundle, InvalidBatch naming each bad Observation."""
    bundle = loads(payload, "the JWS payload")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("a fhir+json payload is a FHIR Bundle")
    if bundle.get("type") not in ("collection", "batch", "transaction"):
        raise BadRequest("the Bundle type is collection, batch or transaction")
    ident = bundle.get("identifier")
    batch_id = ident.get("value") if isinstance(ident, dict) else None
    if not isinstance(batch_id, str) or not BATCH_ID.match(batch_id):
        raise BadRequest("Bundle.identifier.value is the batch id (1-64 of A-Z a-z 0-9 . _ -)")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise BadRequest("the Bundle has no entries")
    readings: list[Any] = []
    errors: list[dict[str, Any]] = []
    subjects = set()
    for i, entry in enumerate(entries):
        obs = entry.get("resource") if isinstance(entry, dict) else None
        try:
            readings.append(_reading(obs))
        except ValueError as err:
            errors.append({"index": i, "pointer": f"/entry/{i}/resource", "detail": str(err)})
            continue
        subject = obs.get("subject") if isinstance(obs, dict) else None
        if isinstance(subject, dict) and isinstance(subject.get("identifier"), dict):
            subjects.add(str(subject["identifier"].get("value")))
    if errors:
        raise InvalidBatch(f"{len(errors)} of {len(entries)} entries refused", errors=errors)
    if len(subjects) > 1:
        raise BadRequest("every Observation of one batch is about the same patient")
    return batch_id, readings, subjects.pop() if subjects else None


def _ref(kind: str, value: str) -> dict[str, Any]:
    return {"type": kind, "identifier": {"system": SUBJECT_SYSTEM, "value": value}}


def _quantity_out(code: str, value: float) -> dict[str, Any]:
    unit = CODES[code].unit
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _coding(code: str) -> dict[str, Any]:
    display = BP_PANEL_DISPLAY if code == BP_PANEL else CODES[code].display
    return {"system": LOINC, "code": code, "display": display}


def _concept(code: str) -> dict[str, Any]:
    coding = _coding(code)
    codings = [coding]
    fixed = _PROFILES.get(code, ("", code))[1]
    if fixed != code:
        # The profile's own coding first: a reader that knows only the profile finds it.
        codings.insert(0, _coding(fixed))
    return {"coding": codings, "text": coding["display"]}


def observation(
    reading: dict[str, Any], patient: str, device: str, batch_id: str, i: int
) -> dict[str, Any]:
    """One stored reading as an Observation, claiming the R4 vital-signs profiles it meets
    (the base profile for every vital sign, plus the code's own profile where R4 has one)."""
    code = reading["code"]
    rid = hashlib.sha256(f"{device}\n{batch_id}\n{i}".encode()).hexdigest()[:40]
    kind = "laboratory" if code in _LABORATORY else "vital-signs"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": kind}]}],
        "code": _concept(code),
        "subject": _ref("Patient", patient),
        "effectiveDateTime": reading["time"],
        "device": _ref("Device", device),
        "identifier": [{"system": BATCH_SYSTEM, "value": f"{batch_id}/{i}"}],
    }
    if kind == "vital-signs":
        profiles = [VITALSIGNS]
        if code in _PROFILES:
            profiles.append(PROFILE + _PROFILES[code][0])
        obs["meta"] = {"profile": profiles}
    if code == BP_PANEL:
        obs["component"] = [
            {"code": _concept(c["code"]), "valueQuantity": _quantity_out(c["code"], c["value"])}
            for c in reading["components"]
        ]
    else:
        obs["valueQuantity"] = _quantity_out(code, reading["value"])
    return obs


def searchset(observations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(observations),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{o['id'][:8]}-{o['id'][8:12]}-{o['id'][12:16]}-"
                f"{o['id'][16:20]}-{o['id'][20:32]}",
                "resource": o,
                "search": {"mode": "match"},
            }
            for o in observations
        ],
    }
