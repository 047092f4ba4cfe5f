"""Vitals from remote-monitoring devices: signed batches, validation, encryption, streaming."""
