"""Identity: gateway keys, enrollment, attestations (JWT), DPoP, token status lists."""

from __future__ import annotations
