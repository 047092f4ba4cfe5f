"""The cosignatures this gateway's log has collected from its witnesses (the
``cosignatures`` store on ``gateway.db``), kept for :mod:`gateway.witnessing`."""

from __future__ import annotations

from .store import CosignatureStore

__all__ = ["CosignatureStore"]
