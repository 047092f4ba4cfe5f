"""The validation table: which LOINC codes are accepted, in which UCUM units, within which
plausible ranges, and how other units convert to the one stored.

Pure. Units are UCUM case-sensitive codes (``/min``, ``%``, ``mm[Hg]``, ``Cel``, ``[degF]``,
``kg``, ``[lb_av]``, ``mmol/L``, ``mg/dL``); values are stored in the canonical unit of
their code, with what the device sent kept beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BP_PANEL", "CODES", "Code", "UnitError", "normalise"]

#: Glucose: 1 mmol/L = 18.0156 mg/dL (molar mass of glucose, 180.156 g/mol).
GLUCOSE_MG_PER_MMOL = 18.0156
LB_KG = 0.45359237  # the international avoirdupois pound, exactly


@dataclass(frozen=True, slots=True)
class Code:
    """One LOINC observation code and its rules."""

    loinc: str
    display: str
    unit: str  # canonical UCUM unit
    low: float  # plausible range, canonical unit, inclusive
    high: float
    #: Other accepted UCUM units -> conversion into ``unit``.
    convert: dict[str, Callable[[float], float]] = field(default_factory=dict)
    decimals: int = 2


# Ranges are physiological plausibility bounds (what a working device on a living person can
# report), not clinical alert thresholds: they catch unit mix-ups and sensor faults.
_TABLE = (
    Code("8867-4", "Heart rate", "/min", 20, 300, decimals=0),
    Code("59408-5", "Oxygen saturation by pulse oximetry", "%", 50, 100, decimals=1),
    Code("2708-6", "Oxygen saturation in arterial blood", "%", 50, 100, decimals=1),
    Code("8480-6", "Systolic blood pressure", "mm[Hg]", 40, 300, decimals=0),
    Code("8462-4", "Diastolic blood pressure", "mm[Hg]", 20, 200, decimals=0),
    Code("8310-5", "Body temperature", "Cel", 25, 45, {"[degF]": lambda f: (f - 32) * 5 / 9}),
    Code("9279-1", "Respiratory rate", "/min", 2, 80, decimals=0),
    Code("29463-7", "Body weight", "kg", 0.5, 500, {"[lb_av]": lambda lb: lb * LB_KG}),
    Code(
        "15074-8",
        "Glucose [Moles/volume] in Blood",
        "mmol/L",
        0.5,
        60,
        {"mg/dL": lambda mg: mg / GLUCOSE_MG_PER_MMOL},
    ),
)
CODES: dict[str, Code] = {c.loinc: c for c in _TABLE}

#: The blood pressure panel: a reading with two components and no value of its own.
BP_PANEL = "85354-9"
BP_PANEL_DISPLAY = "Blood pressure panel with all children optional"
BP_COMPONENTS = ("8480-6", "8462-4")


class UnitError(ValueError):
    """The value is unusable: unknown unit for the code, or outside the plausible range."""


def normalise(loinc: str, unit: str, value: float) -> float:
    """The value in the code's canonical unit, rounded to the code's precision.

    Raises UnitError for a unit the code does not take or a value outside its range (the
    range is checked after conversion, so 98.6 [degF] and 37 Cel are judged alike).
    """
    code = CODES[loinc]
    if unit == code.unit:
        canonical = value
    elif unit in code.convert:
        canonical = code.convert[unit](value)
    else:
        units = ", ".join([code.unit, *code.convert])
        raise UnitError(f"unit {unit!r} is not accepted for {loinc} (use {units})")
    canonical = round(canonical, code.decimals)
    if not code.low <= canonical <= code.high:
        raise UnitError(
            f"{canonical:g} {code.unit} is outside the plausible range "
            f"{code.low:g}..{code.high:g} for {loinc}"
        )
    return canonical
