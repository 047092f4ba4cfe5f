"""Patient-controlled access: consents, break-the-glass, and the one place they are enforced."""

from __future__ import annotations
