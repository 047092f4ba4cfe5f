"""Audit for compliance staff: an off-ledger index of the ledger and provable queries."""

from __future__ import annotations
