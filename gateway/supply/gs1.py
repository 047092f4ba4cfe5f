"""GS1 keys as the supply chain names things: check digits, GLNs, and the two spellings of
a serialized item (an EPC URN and a GS1 Digital Link URI) turned into one.

Pure: no I/O. References: GS1 General Specifications 7.9 (the mod-10 check digit), EPC
Tag Data Standard (TDS) 6.3 (EPC pure-identity URIs: SGTIN, SSCC, SGLN, PGLN) and GS1
Digital Link URI Syntax 1.x (``https://id.gs1.org/01/{gtin}/21/{serial}``).

Every item is kept in one normal form, the Digital Link URI on ``id.gs1.org`` with the
GTIN as 14 digits and the serial percent-encoded as TDS and Digital Link both allow: a
unit named by its URN in one event and by a Digital Link in the next is one unit.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "DIGITAL_LINK",
    "InvalidIdentifier",
    "Item",
    "check_digit",
    "gln_valid",
    "parse_item",
    "parse_lot",
    "parse_party",
    "parse_udi",
]

DIGITAL_LINK = "https://id.gs1.org"

#: GS1 AI encodable character set 82 (General Specifications figure 7.11-1): what a serial
#: (AI 21) may hold, up to 20 characters.
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
# TDS 6.3: pure-identity EPC URIs (the URN body is ASCII; the serial URI-escaped).
_SGTIN = re.compile(r"urn:epc:id:sgtin:([0-9]{6,12})\.([0-9]{1,7})\.([!-~]{1,60})", re.ASCII)
_SSCC = re.compile(r"urn:epc:id:sscc:([0-9]{6,12})\.([0-9]{5,11})", re.ASCII)
_SGLN = re.compile(r"urn:epc:id:sgln:([0-9]{6,12})\.([0-9]{0,6})\.([!-~]{1,60})", re.ASCII)
_PGLN = re.compile(r"urn:epc:id:pgln:([0-9]{6,12})\.([0-9]{0,6})", re.ASCII)
# Digital Link: any host may resolve GS1 keys; the path carries the primary key and, for an
# item, its serial. A lot (10) may sit between the GTIN and the serial.
_DL_ITEM = re.compile(
    r"https://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?"
    r"/01/([0-9]{14})(?:/10/([!-~]{1,60}?))?/21/([!-~]{1,60})",
    re.ASCII,
)
_DL_SSCC = re.compile(r"https://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/00/([0-9]{18})", re.ASCII)
# TDS 6.3.1 / Digital Link: a GTIN's lot (an EPC class, not a unit).
_LGTIN = re.compile(r"urn:epc:class:lgtin:([0-9]{6,12})\.([0-9]{1,7})\.([!-~]{1,60})", re.ASCII)
_DL_LOT = re.compile(
    r"https://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/01/([0-9]{14})/10/([!-~]{1,60})", re.ASCII
)
_DL_GLN = re.compile(r"https://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/(414|417)/([0-9]{13})(?:/.*)?")


class InvalidIdentifier(ValueError):
    """Not a GS1 identifier this gateway accepts (malformed, or a wrong check digit)."""


def check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit of ``digits`` (all but the check digit itself): weights
    3 and 1 alternating from the right, then the distance up to a multiple of ten."""
    if not _DIGITS.fullmatch(digits):
        raise InvalidIdentifier("a GS1 key is digits")
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def _valid(key: str, length: int) -> bool:
    return (
        len(key) == length
        and _DIGITS.fullmatch(key) is not None
        and check_digit(key[:-1]) == int(key[-1])
    )


def gln_valid(gln: object) -> bool:
    """A Global Location Number: 13 digits whose last is the GS1 check digit."""
    return isinstance(gln, str) and _valid(gln, 13)


def _serial(escaped: str, what: str = "serial") -> str:
    """A serial (or lot) from its URI form (TDS 6.3: %-escapes for the characters a URN may
    not hold), checked against character set 82."""
    try:
        raw = urllib.parse.unquote(escaped, errors="strict")
    except UnicodeDecodeError as e:
        raise InvalidIdentifier(f"the {what} is not UTF-8") from e
    if not _CSET82.fullmatch(raw):
        raise InvalidIdentifier(f"a {what} is 1-20 characters of GS1 character set 82")
    return raw


@dataclass(frozen=True, slots=True)
class Item:
    """One identified physical thing: a serialized trade item (GTIN + serial) or a
    logistic unit (SSCC). ``uri`` is its normal form."""

    kind: str  # "sgtin" or "sscc"
    key: str  # the GTIN-14 or the SSCC-18
    serial: str | None = None  # sgtin only, unescaped

    @property
    def uri(self) -> str:
        if self.kind == "sscc":
            return f"{DIGITAL_LINK}/00/{self.key}"
        assert self.serial is not None
        return f"{DIGITAL_LINK}/01/{self.key}/21/{urllib.parse.quote(self.serial, safe='')}"


def _sgtin(prefix: str, ref: str, escaped: str) -> Item:
    # TDS 6.3.1: the indicator digit leads the item reference; GCP + item ref is 13 digits.
    if len(prefix) + len(ref) != 13:
        raise InvalidIdentifier("an SGTIN's company prefix and item reference are 13 digits")
    body = ref[0] + prefix + ref[1:]
    return Item("sgtin", body + str(check_digit(body)), _serial(escaped))


def _sscc(prefix: str, ref: str) -> Item:
    # TDS 6.3.2: the extension digit leads the serial reference; GCP + ref is 17 digits.
    if len(prefix) + len(ref) != 17:
        raise InvalidIdentifier("an SSCC's company prefix and serial reference are 17 digits")
    body = ref[0] + prefix + ref[1:]
    return Item("sscc", body + str(check_digit(body)))


def parse_item(value: object) -> Item:
    """The item an EPC URN (``urn:epc:id:sgtin:``/``sscc:``) or a GS1 Digital Link URI
    (``/01/{gtin}/21/{serial}``, ``/00/{sscc}``) names. Raises InvalidIdentifier for
    anything else, or for a GTIN or SSCC whose check digit is wrong."""
    if not isinstance(value, str) or len(value) > 512:
        raise InvalidIdentifier("an identifier is a string")
    if m := _SGTIN.fullmatch(value):
        return _sgtin(m[1], m[2], m[3])
    if m := _SSCC.fullmatch(value):
        return _sscc(m[1], m[2])
    if m := _DL_ITEM.fullmatch(value):
        if not _valid(m[1], 14):
            raise InvalidIdentifier("the GTIN's check digit is wrong")
        return Item("sgtin", m[1], _serial(m[3]))
    if m := _DL_SSCC.fullmatch(value):
        if not _valid(m[1], 18):
            raise InvalidIdentifier("the SSCC's check digit is wrong")
        return Item("sscc", m[1])
    raise InvalidIdentifier(
        "an item is urn:epc:id:sgtin:, urn:epc:id:sscc: or a GS1 Digital Link "
        "(https://id.gs1.org/01/{gtin}/21/{serial})"
    )


def parse_lot(value: object) -> tuple[str, str]:
    """The GTIN-14 and lot an EPC class names: ``urn:epc:class:lgtin:`` (TDS 6.3.1) or a
    Digital Link ``/01/{gtin}/10/{lot}``. Raises InvalidIdentifier."""
    if not isinstance(value, str) or len(value) > 512:
        raise InvalidIdentifier("a lot is a string")
    if m := _LGTIN.fullmatch(value):
        if len(m[1]) + len(m[2]) != 13:
            raise InvalidIdentifier("an LGTIN's company prefix and item reference are 13 digits")
        body = m[2][0] + m[1] + m[2][1:]
        return body + str(check_digit(body)), _serial(m[3], "lot")
    if m := _DL_LOT.fullmatch(value):
        if not _valid(m[1], 14):
            raise InvalidIdentifier("the GTIN's check digit is wrong")
        return m[1], _serial(m[2], "lot")
    raise InvalidIdentifier("a lot is urn:epc:class:lgtin: or a Digital Link /01/{gtin}/10/{lot}")


def lot_uri(gtin: str, lot: str) -> str:
    """A lot's normal form: its Digital Link on id.gs1.org."""
    return f"{DIGITAL_LINK}/01/{gtin}/10/{urllib.parse.quote(lot, safe='')}"


def parse_party(value: object) -> str:
    """The GLN of a party or location: ``urn:epc:id:pgln:``/``sgln:`` (TDS 6.3.3, 6.3.13)
    or a Digital Link ``/417/{gln}`` or ``/414/{gln}``. A location's extension is dropped:
    custody is held by the GLN. Raises InvalidIdentifier."""
    if not isinstance(value, str) or len(value) > 512:
        raise InvalidIdentifier("a party is a string")
    m = _PGLN.fullmatch(value) or _SGLN.fullmatch(value)
    if m:
        prefix, ref = m[1], m[2]
        if len(prefix) + len(ref) != 12:
            raise InvalidIdentifier("a GLN's company prefix and location reference are 12 digits")
        body = prefix + ref
        return body + str(check_digit(body))
    if m := _DL_GLN.fullmatch(value):
        if not gln_valid(m[2]):
            raise InvalidIdentifier("the GLN's check digit is wrong")
        return m[2]
    raise InvalidIdentifier("a party is urn:epc:id:pgln:, urn:epc:id:sgln: or a Digital Link")


# A GS1 UDI in its human-readable form (GS1 General Specifications 3.2, the UDI of a medical
# device): the GTIN (01), then application identifiers in any order, among them the serial
# (21); expiry (17), production date (11) and lot (10) may be there and name no other unit.
_HRI = re.compile(r"\(01\)([0-9]{14})((?:\((?:10|11|17|21)\)[^()]{1,20}){1,4})", re.ASCII)
_HRI_PART = re.compile(r"\((10|11|17|21)\)([^()]{1,20})", re.ASCII)


def parse_udi(value: object) -> Item:
    """The serialized unit a device's UDI names: a GS1 Digital Link, an SGTIN URN, or the
    human-readable form ``(01){gtin}...(21){serial}``. Raises InvalidIdentifier, also for a
    UDI without a serial (a UDI-DI alone names a model, not a unit)."""
    if isinstance(value, str) and (m := _HRI.fullmatch(value)):
        parts = dict(_HRI_PART.findall(m[2]))
        if "21" not in parts:
            raise InvalidIdentifier("the UDI has no serial (21)")
        if not _valid(m[1], 14):
            raise InvalidIdentifier("the GTIN's check digit is wrong")
        return Item("sgtin", m[1], _serial(urllib.parse.quote(parts["21"], safe="")))
    item = parse_item(value)
    if item.kind != "sgtin":
        raise InvalidIdentifier("a device's UDI names a GTIN and a serial")
    return item
