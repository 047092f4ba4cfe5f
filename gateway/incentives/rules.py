"""A program's rule: a CEL expression over the aggregates of one period.

cel-python (``celpy``) parses and evaluates CEL but has no type checker: its
``Environment(annotations=...)`` only converts inputs, and an undeclared name is found only
when an evaluation reaches it. So publication checks the rule in two steps:

1. **Syntax whitelist** over the parsed tree: arithmetic, comparison, logic, the ternary
   and parentheses; every identifier is a declared variable (``days``); every call is one of
   the aggregate functions below with exactly one string literal argument that is an
   accepted LOINC code. No member access, indexing, lists, maps or macros, so a rule cannot
   reach anything but the aggregates, and always terminates.
2. **Result type** by evaluating the rule on representative activations (no readings, one
   reading a day, every reading in range at the bounds): each result must be a bool or an
   int in ``0..MAX_SCORE``. Since the only inputs are the aggregate functions and ``days``,
   whose types are fixed, a rule whose result is of another type on some activation (a
   double, an error) is refused; a result that is of the right type for these activations
   and not for a real period is refused again at evaluation time (``evaluate``).

A score is bounded so that a rule's output cannot carry a reading's value onto the ledger:
at most log2(MAX_SCORE + 1) bits per period, and the rule itself is public.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import celpy.celtypes as ct
import lark
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from ..errors import BadRequest
from .aggregates import CODES, empty, per_code

__all__ = ["FUNCTIONS", "MAX_RULE", "MAX_SCORE", "VARIABLES", "Rule", "RuleError", "compile_rule"]

MAX_RULE = 2000
MAX_SCORE = 10
MAX_NODES = 400
#: The aggregate each function returns, for the code named, over the period.
FUNCTIONS = {
    "count": "count",
    "days_with": "days_with",
    "streak": "streak",
    "min": "min",
    "max": "max",
    "mean": "mean",
}
INT_FUNCTIONS = frozenset({"count", "days_with", "streak"})
VARIABLES = ("days",)
#: Tree nodes a rule may contain (cel-python's grammar, celpy/cel.lark).
_ALLOWED = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "relation_lt",
        "relation_le",
        "relation_gt",
        "relation_ge",
        "relation_eq",
        "relation_ne",
        "addition",
        "addition_add",
        "addition_sub",
        "multiplication",
        "multiplication_mul",
        "multiplication_div",
        "multiplication_mod",
        "unary",
        "unary_not",
        "unary_neg",
        "member",
        "primary",
        "literal",
        "ident",
        "ident_arg",
        "exprlist",
        "paren_expr",
    }
)
_LITERALS = frozenset({"INT_LIT", "FLOAT_LIT", "BOOL_LIT", "STRING_LIT"})
_ENV = celpy.Environment()


class RuleError(BadRequest):
    """The rule is not acceptable: bad CEL, an unknown name, or a result that is not a bool
    or a small integer."""

    slug = "invalid-rule"
    title = "The program's rule is not acceptable"


def _code_arg(node: lark.Tree[Any]) -> str:
    """The LOINC code a call names: its one argument must be a bare string literal."""
    name = str(node.children[0])
    args = node.children[1] if len(node.children) > 1 else None
    if not isinstance(args, lark.Tree) or len(args.children) != 1:
        raise RuleError(f"{name}() takes one LOINC code, as a string literal")
    tokens = [t for t in args.scan_values(lambda v: isinstance(v, lark.Token))]
    if len(tokens) != 1 or tokens[0].type != "STRING_LIT":
        raise RuleError(f"{name}() takes one LOINC code, as a string literal")
    raw = str(tokens[0])
    code = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'" else raw
    if code not in CODES:
        raise RuleError(f"{name}({raw}): not an accepted LOINC vital-sign code")
    return code


def _check_tree(tree: lark.Tree[Any]) -> frozenset[str]:
    """Apply the whitelist; returns the codes the rule names."""
    codes: set[str] = set()
    nodes = 0
    for node in tree.iter_subtrees():
        nodes += 1
        if node.data not in _ALLOWED:
            raise RuleError(f"rules may not use {node.data!s} (only arithmetic, logic and calls)")
        if node.data == "ident":
            name = str(node.children[0])
            if name not in VARIABLES:
                raise RuleError(f"unknown name {name!r}: the variables are {', '.join(VARIABLES)}")
        elif node.data == "ident_arg":
            name = str(node.children[0])
            if name not in FUNCTIONS:
                raise RuleError(
                    f"unknown function {name!r}: the functions are {', '.join(FUNCTIONS)}"
                )
            codes.add(_code_arg(node))
        elif node.data == "literal":
            first = node.children[0] if node.children else None
            kind = first.type if isinstance(first, lark.Token) else ""
            if kind not in _LITERALS:
                raise RuleError(f"rules may not use {kind} literals")
    if nodes > MAX_NODES:
        raise RuleError(f"the rule is too complex (more than {MAX_NODES} nodes)")
    if not codes:
        raise RuleError("the rule names no vital sign: it would give every patient one result")
    return frozenset(codes)


def _functions(aggregates: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    codes = aggregates["codes"]

    def make(field: str) -> Callable[[Any], Any]:
        wrap = ct.IntType if field in INT_FUNCTIONS else ct.DoubleType
        return lambda code: wrap(codes[str(code)][field])

    return {name: make(field) for name, field in FUNCTIONS.items()}


def _samples(days: int, codes: frozenset[str]) -> list[dict[str, Any]]:
    """Representative aggregates for the type check: nothing, one reading a day at a low
    value, many readings a day at a high one."""
    none = empty(days, codes)
    one = {"days": days, "codes": {c: per_code(days, [1] * days, [1.0]) for c in codes}}
    many = {"days": days, "codes": {c: per_code(days, [24] * days, [1.0, 300.0]) for c in codes}}
    return [none, one, many]


@dataclass(frozen=True, slots=True)
class Rule:
    """A checked rule, ready to evaluate. ``codes``: the LOINC codes it reads."""

    text: str
    codes: frozenset[str]
    _tree: lark.Tree[Any]

    def evaluate(self, aggregates: Mapping[str, Any]) -> bool | int:
        """The rule's result on ``aggregates`` (as ``aggregate`` builds them): a bool or an
        int in 0..MAX_SCORE. Raises RuleError for anything else (an error, a double, an
        out-of-range int)."""
        runner = _ENV.program(self._tree, functions=_functions(aggregates))
        try:
            out = runner.evaluate({"days": ct.IntType(int(aggregates["days"]))})
        except CELEvalError as e:
            raise RuleError(f"the rule failed to evaluate: {e.args[0]}") from None
        if isinstance(out, ct.BoolType):
            return bool(out)
        if isinstance(out, ct.IntType) and not isinstance(out, ct.UintType):
            if 0 <= int(out) <= MAX_SCORE:
                return int(out)
            raise RuleError(f"the rule's score {int(out)} is outside 0..{MAX_SCORE}")
        if isinstance(out, CELEvalError):
            raise RuleError(f"the rule failed to evaluate: {out.args[0]}")
        raise RuleError(
            f"the rule must give a bool or an int 0..{MAX_SCORE}, not {type(out).__name__}"
        )


def compile_rule(text: Any, days: int = 7) -> Rule:
    """Check and compile a rule for periods of ``days`` days. Raises RuleError."""
    if isinstance(text, str) and len(text) <= MAX_RULE:
        return _compiled(text, days)
    return _compile(text, days)


@functools.lru_cache(maxsize=256)
def _compiled(text: str, days: int) -> Rule:
    # A published program's rule is parsed once a process, not at every evaluation (lark's
    # parse is most of the cost of one: bench/incentives.py). Errors are not cached.
    return _compile(text, days)


def _compile(text: Any, days: int) -> Rule:
    if not isinstance(text, str) or not text.strip():
        raise RuleError("rule is a CEL expression (a non-empty string)")
    if len(text) > MAX_RULE:
        raise RuleError(f"rule is at most {MAX_RULE} characters")
    try:
        tree = _ENV.compile(text)
    except CELParseError as e:
        raise RuleError(f"the rule is not valid CEL: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise RuleError("the rule is nested too deeply") from None
    rule = Rule(text, _check_tree(tree), tree)
    for sample in _samples(days, rule.codes):
        rule.evaluate(sample)
    return rule
