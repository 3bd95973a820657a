"""Kubernetes resource quantities ("50Gi", "500m", "1.5") as numbers, and in canonical form."""

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

_SUFFIXES = {
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
# ASCII digits only: Python's \d also matches other scripts' digits, which the API server refuses.
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity; ValueError for anything the API server would refuse."""
    match = _QUANTITY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]
    except InvalidOperation as error:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from error


def mebibytes(text: str) -> int:
    """A memory quantity in whole MiB, rounded down."""
    return int(parse_quantity(text) / _SUFFIXES["Mi"])


_BINARY_SUFFIXES = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")
_DECIMAL_SUFFIXES = {18: "E", 15: "P", 12: "T", 9: "G", 6: "M", 3: "k", 0: "", -3: "m", -6: "u", -9: "n"}


def canonical_quantity(text: str) -> str:
    """The form in which the API server stores and returns a quantity ("1.5" → "1500m",
    "1024Mi" → "1Gi"), so that the program's inputs never differ from the live object.

    Like apimachinery's Quantity: a binary suffix keeps binary form when the value is a whole
    number of bytes, using the largest suffix that leaves a whole number; anything else is
    written in decimal form with the largest multiple-of-three exponent whose mantissa is
    whole, and values finer than nano are rounded up to it.
    docs/upstream-behaviour.md#the-api-server-stores-quantities-in-canonical-form
    """
    value = parse_quantity(text)
    match = _QUANTITY.match(text)
    binary = bool(match and (match.group(2) or "").endswith("i"))
    if binary and value == value.to_integral_value():
        for suffix in _BINARY_SUFFIXES:
            amount = value / _SUFFIXES[suffix]
            if amount >= 1 and amount == amount.to_integral_value():
                return f"{int(amount)}{suffix}"
        return str(int(value))
    nanos = (value * 10**9).to_integral_value(rounding=ROUND_CEILING)
    if nanos == 0:
        return "0"
    for exponent, suffix in _DECIMAL_SUFFIXES.items():
        unit = Decimal(10) ** (exponent + 9)
        if nanos % unit == 0:
            return f"{int(nanos // unit)}{suffix}"
    raise AssertionError("unreachable: nano units always divide")  # pragma: no cover
