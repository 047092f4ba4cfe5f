"""Schemathesis hooks for the OpenAPI test: a compact JWS (application/jose) is text."""

import schemathesis

schemathesis.serializer.alias("application/jose", "text/plain")
