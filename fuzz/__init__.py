"""Coverage-guided fuzzers (atheris) for every parser that takes outside bytes; see README."""
