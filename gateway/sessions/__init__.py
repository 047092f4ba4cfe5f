"""Calls: TURN credentials now; the session state machine and signalling follow (issue 5)."""

from __future__ import annotations
