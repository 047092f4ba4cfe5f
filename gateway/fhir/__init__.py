"""The FHIR R4 REST API under ``/fhir`` (docs/fhir.md): a mapping layer over the same
services as ``/v1``, with SMART v2 scopes and OperationOutcome errors."""

from __future__ import annotations

from .http import setup
from .outcome import fhir_outcome_middleware

__all__ = ["fhir_outcome_middleware", "setup"]
