"""The one FHIR version every output of the gateway speaks: R4, 4.0.1.

The profile URLs claimed (vital signs, ``http://hl7.org/fhir/StructureDefinition/...``) and
the code systems used are R4's. Responses say so in their media type, as R4's RESTful API
defines it (``fhirVersion`` parameter, major.minor: https://hl7.org/fhir/R4/http.html).
"""

from __future__ import annotations

__all__ = ["FHIR_JSON", "FHIR_VERSION"]

FHIR_VERSION = "4.0.1"
#: The Content-Type of every FHIR response.
FHIR_JSON = "application/fhir+json; fhirVersion=4.0"
