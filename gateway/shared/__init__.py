"""State shared by several replicas through Redis (issue 15): each part is a Redis backing of
a protocol whose in-process implementation is the embedded default (STYLE.md 15)."""
