"""The rule checker and the aggregates, without a gateway: CEL that is invalid, names
unknown variables or functions, or gives anything but a bool or a small int, is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.incentives.aggregates import aggregate, empty
from gateway.incentives.program import Program, parse_program
from gateway.incentives.rules import MAX_SCORE, RuleError, compile_rule

HR = '"8867-4"'


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("days_with(" + HR + ") >=", "not valid CEL"),
        ("steps > 3", "unknown name 'steps'"),
        ("readings(" + HR + ") > 3", "unknown function 'readings'"),
        ('count("1234-5") > 1', "not an accepted LOINC"),
        ("count(" + HR + ", 2) > 1", "one LOINC code"),
        ("count(days) > 1", "one LOINC code"),
        ("mean(" + HR + ")", "not DoubleType"),
        ("count(" + HR + ")", "outside 0..10"),
        ("max(" + HR + ") > 1.0 ? 1.5 : 1", "not DoubleType"),
        ("[1, 2].size() > 1", "list_lit"),
        ('{"a": 1}.a > 0', "may not use mapinits"),
        ("count(" + HR + ") / 0 > 1", "failed to evaluate"),
        ("int(mean(" + HR + ")) > 0", "unknown function 'int'"),
        ("days >= 1", "names no vital sign"),
        ("count(" + HR + ") > 1u", "UINT_LIT"),
        (("count(" + HR + ") > 1 && ") * 300 + "true", "at most 2000 characters"),
        (("count(" + HR + ") > 1 && ") * 80 + "true", "too complex"),
        ("(" * 150 + "count(" + HR + ") > 1" + ")" * 150, "too complex"),
        ("", "non-empty string"),
        (3, "non-empty string"),
    ],
)
def test_a_bad_rule_is_refused_with_a_reason(rule: object, why: str) -> None:
    with pytest.raises(RuleError, match=why.replace("(", r"\(").replace(")", r"\)")):
        compile_rule(rule)


@pytest.mark.parametrize(
    ("rule", "codes"),
    [
        ("days_with(" + HR + ") >= 5", {"8867-4"}),
        ('streak("85354-9") >= 3 && mean("8480-6") < 140.0', {"85354-9", "8480-6"}),
        ("count(" + HR + ") >= 28 ? 3 : (count(" + HR + ") > 0 ? 1 : 0)", {"8867-4"}),
        ("!(max(" + HR + ") > 180.0) && days == 7", {"8867-4"}),
    ],
)
def test_a_good_rule_compiles_and_names_its_codes(rule: str, codes: set[str]) -> None:
    assert compile_rule(rule).codes == codes


def test_a_score_is_bounded_at_evaluation_too() -> None:
    rule = compile_rule("days_with(" + HR + ") > 3 ? 10 : 0")
    aggs = empty(7, ["8867-4"])
    assert rule.evaluate(aggs) == 0
    aggs["codes"]["8867-4"]["days_with"] = 4
    assert rule.evaluate(aggs) == MAX_SCORE
    plain = compile_rule("streak(" + HR + ") - 1 >= 0 ? 2 : 1")
    aggs["codes"]["8867-4"]["streak"] = 40  # not a sample the checker tried: still refused
    assert plain.evaluate(aggs) == 2
    weird = compile_rule("count(" + HR + ") > 100 ? 2 : 0")
    aggs["codes"]["8867-4"]["count"] = 101
    assert weird.evaluate(aggs) == 2


def test_aggregates_count_days_streaks_and_values_in_the_period_only() -> None:
    start = 1_700_006_400  # a UTC midnight
    t = lambda d, h: f"2023-11-{15 + d:02d}T{h:02d}:00:00.000Z"  # noqa: E731
    readings = [
        {"code": "8867-4", "unit": "/min", "value": 60, "time": t(0, 8)},
        {"code": "8867-4", "unit": "/min", "value": 80, "time": t(0, 9)},
        {"code": "8867-4", "unit": "/min", "value": 70, "time": t(1, 8)},
        {"code": "8867-4", "unit": "/min", "value": 99, "time": t(3, 8)},
        {"code": "8867-4", "unit": "/min", "value": 10, "time": "2023-11-14T23:59:59.999Z"},
        {"code": "8867-4", "unit": "/min", "value": 11, "time": "2023-11-19T00:00:00.000Z"},
        {
            "code": "85354-9",
            "time": t(2, 7),
            "components": [
                {"code": "8480-6", "unit": "mm[Hg]", "value": 120},
                {"code": "8462-4", "unit": "mm[Hg]", "value": 80},
            ],
        },
        {"code": "8310-5", "unit": "Cel", "value": 37.0, "time": t(1, 8)},
    ]
    aggs = aggregate(readings, start, 4, ["8867-4", "85354-9", "8480-6"])
    assert aggs == {
        "days": 4,
        "codes": {
            "8867-4": {
                "count": 4,
                "days_with": 3,
                "streak": 2,
                "min": 60.0,
                "max": 99.0,
                "mean": 77.25,
            },
            "85354-9": {
                "count": 1,
                "days_with": 1,
                "streak": 1,
                "min": 0.0,
                "max": 0.0,
                "mean": 0.0,
            },
            "8480-6": {
                "count": 1,
                "days_with": 1,
                "streak": 1,
                "min": 120.0,
                "max": 120.0,
                "mean": 120.0,
            },
        },
    }


def test_a_program_is_named_by_the_hash_of_its_canonical_text() -> None:
    body = {"name": "BP", "start": "2026-12-07", "rule": 'days_with("85354-9") >= 5'}
    a = parse_program(body, "adm:1")
    assert a.id == parse_program(dict(reversed(list(body.items()))), "adm:1").id
    assert a.id != parse_program({**body, "points": 2}, "adm:1").id
    assert a.id != parse_program(body, "prov:2").id
    assert Program.from_canonical(a.canonical()) == a
    assert (a.period_days, a.periods, a.points) == (7, 1, 1)
    with pytest.raises(BadRequest, match="canonical"):
        Program.from_canonical(a.canonical().replace(b'"name"', b' "name"'))


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "start": "2026-12-07"},
        {"name": "", "start": "2026-12-07", "rule": 'count("8867-4") > 1'},
        {"name": "x" * 121, "start": "2026-12-07", "rule": 'count("8867-4") > 1'},
        {"name": "x", "start": "2026-02-30", "rule": 'count("8867-4") > 1'},
        {"name": "x", "start": "2026-12-07T00:00:00Z", "rule": 'count("8867-4") > 1'},
        {"name": "x", "start": "2026-12-07", "rule": 'count("8867-4") > 1', "periods": 0},
        {"name": "x", "start": "2026-12-07", "rule": 'count("8867-4") > 1', "periods": True},
        {"name": "x", "start": "2026-12-07", "rule": 'count("8867-4") > 1', "period_days": 32},
        {"name": "x", "start": "2026-12-07", "rule": 'count("8867-4") > 1', "points": -1},
        {"name": "x", "start": "2026-12-07", "rule": 'count("8867-4") > 1', "extra": 1},
        ["name"],
    ],
)
def test_a_malformed_program_is_refused(body: object) -> None:
    with pytest.raises(BadRequest):
        parse_program(body, "adm:1")


_TOKENS = st.sampled_from(
    [
        'count("8867-4")',
        'mean("8480-6")',
        'days_with("85354-9")',
        "days",
        "1",
        "0",
        "-1",
        "2.5",
        "true",
        "null",
        '"s"',
        "b'x'",
        "1u",
        "x",
        "size",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ".",
        ",",
        ":",
        "?",
        "+",
        "-",
        "*",
        "/",
        "%",
        "!",
        "&&",
        "||",
        "==",
        "<",
        ">=",
        " in ",
        ".all(v, v)",
        "has(",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_TOKENS, max_size=40).map(" ".join)))
def test_any_text_is_a_rule_or_a_rule_error(text: str) -> None:
    """Whatever is sent as a rule, publication answers a Rule or a RuleError (400), never
    another exception (a 500), and an accepted rule gives a bool or a small int."""
    try:
        rule = compile_rule(text)
    except RuleError:
        return
    aggs = empty(7, rule.codes)
    try:
        out = rule.evaluate(aggs)
    except RuleError:
        return
    assert isinstance(out, bool) or 0 <= out <= MAX_SCORE
