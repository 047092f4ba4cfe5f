"""Verifiable wellness incentives (docs/incentives.md): adherence programs as CEL rules over
per-period aggregates of a patient's vitals, evaluations committed on the ledger."""

from __future__ import annotations

from .aggregates import CODES, aggregate
from .program import Program, parse_program
from .rules import MAX_SCORE, Rule, RuleError, compile_rule

__all__ = [
    "CODES",
    "MAX_SCORE",
    "Program",
    "Rule",
    "RuleError",
    "aggregate",
    "compile_rule",
    "parse_program",
]
