"""Unit conversion for small models: an own table of units, aliases and closest-name hints.

Every unit maps to its dimension's base unit by ``base = value * scale + offset``; only
temperatures have an offset. Names are matched case-insensitively after light clean-up
("°C", "km per hour", "fl. oz." all work).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

SIGNIFICANT = 12  # results are rounded to this many significant digits


@dataclass(frozen=True)
class Unit:
    """One unit: its dimension and how to reach the dimension's base unit."""

    name: str
    dimension: str
    scale: float
    offset: float = 0.0


_MILE = 1609.344
_POUND = 0.45359237
_US_GALLON = 3.785411784  # litres
_YEAR = 365.25 * 86400  # Julian year

# dimension -> [(scale to base, spellings...)]; the first spelling is the unit's name
_TABLE: dict[str, list[tuple[float, *tuple[str, ...]]]] = {
    "length": [  # base: metre
        (1e-9, "nm", "nanometer", "nanometre"),
        (1e-6, "um", "micrometer", "micrometre", "micron"),
        (1e-3, "mm", "millimeter", "millimetre"),
        (1e-2, "cm", "centimeter", "centimetre"),
        (1.0, "m", "meter", "metre"),
        (1e3, "km", "kilometer", "kilometre"),
        (0.0254, "in", "inch", "inches", '"'),
        (0.3048, "ft", "foot", "feet", "'"),
        (0.9144, "yd", "yard"),
        (_MILE, "mi", "mile"),
        (1852.0, "nmi", "nautical mile", "nautical miles"),
    ],
    "mass": [  # base: kilogram
        (1e-6, "mg", "milligram"),
        (1e-3, "g", "gram", "gramme"),
        (1.0, "kg", "kilogram", "kilo", "kgs"),
        (1e3, "t", "tonne", "metric ton", "metric tons"),
        (_POUND / 16, "oz", "ounce"),
        (_POUND, "lb", "lbs", "pound"),
        (_POUND * 14, "st", "stone"),
        (_POUND * 2000, "short ton", "short tons", "us ton", "us tons"),
        (_POUND * 2240, "long ton", "long tons", "uk ton", "uk tons"),
    ],
    "time": [  # base: second
        (1e-9, "ns", "nanosecond"),
        (1e-6, "us", "microsecond"),
        (1e-3, "ms", "millisecond"),
        (1.0, "s", "sec", "second"),
        (60.0, "min", "minute"),
        (3600.0, "h", "hr", "hrs", "hour"),
        (86400.0, "day", "d"),
        (7 * 86400.0, "week", "wk"),
        (_YEAR / 12, "month", "mo"),
        (_YEAR, "year", "yr", "y"),
    ],
    "volume": [  # base: litre
        (1e-3, "ml", "milliliter", "millilitre", "cm3", "cc"),
        (1e-2, "cl", "centiliter", "centilitre"),
        (1e-1, "dl", "deciliter", "decilitre"),
        (1.0, "l", "liter", "litre", "dm3"),
        (1e3, "m3", "cubic meter", "cubic meters", "cubic metre", "cubic metres"),
        (_US_GALLON / 768, "tsp", "teaspoon"),
        (_US_GALLON / 256, "tbsp", "tablespoon"),
        (_US_GALLON / 128, "fl oz", "floz", "fluid ounce", "fluid ounces"),
        (_US_GALLON / 16, "cup"),
        (_US_GALLON / 8, "pt", "pint"),
        (_US_GALLON / 4, "qt", "quart"),
        (_US_GALLON, "gal", "gallon", "us gal", "us gallon", "us gallons"),
        (4.54609, "imp gal", "imperial gallon", "imperial gallons", "uk gal", "uk gallon", "uk gallons"),
    ],
    "speed": [  # base: metre per second
        (1.0, "m/s", "mps", "meter/second", "meters/second", "metre/second", "metres/second"),
        (1 / 3.6, "km/h", "kph", "kmh", "km/hr", "km/hour", "kilometer/hour", "kilometers/hour",
         "kilometre/hour", "kilometres/hour"),
        (_MILE / 3600, "mph", "mi/h", "mile/hour", "miles/hour"),
        (0.3048, "ft/s", "fps", "foot/second", "feet/second"),
        (1852 / 3600, "kn", "knot", "kt", "kts"),
    ],
    "data size": [  # base: byte
        (1 / 8, "bit"),
        (1.0, "B", "byte"),
        (1e3 / 8, "kbit", "kilobit"),
        (1e6 / 8, "Mbit", "megabit"),
        (1e9 / 8, "Gbit", "gigabit"),
        (1e3, "KB", "kilobyte"),
        (1e6, "MB", "megabyte"),
        (1e9, "GB", "gigabyte"),
        (1e12, "TB", "terabyte"),
        (1e15, "PB", "petabyte"),
        (2.0**10, "KiB", "kibibyte"),
        (2.0**20, "MiB", "mebibyte"),
        (2.0**30, "GiB", "gibibyte"),
        (2.0**40, "TiB", "tebibyte"),
    ],
}  # fmt: skip

# temperatures: kelvin = value * scale + offset
_TEMPERATURES: list[tuple[float, float, tuple[str, ...]]] = [
    (1.0, 273.15, ("C", "celsius", "centigrade", "degc")),
    (5 / 9, 273.15 - 32 * 5 / 9, ("F", "fahrenheit", "degf")),
    (1.0, 0.0, ("K", "kelvin", "kelvins")),
]


def _build() -> tuple[dict[str, Unit], list[str]]:
    units: dict[str, Unit] = {}
    spellings: list[str] = []
    for dimension, rows in _TABLE.items():
        for scale, *names in rows:
            unit = Unit(names[0], dimension, scale)
            spellings += names
            for name in names:
                units[name.lower()] = unit
                if name.isalpha() and len(name) >= 3 and not name.endswith("s"):
                    units.setdefault(name.lower() + "s", unit)  # plural: miles, grams, hours
    for scale, offset, names in _TEMPERATURES:
        unit = Unit(names[0], "temperature", scale, offset)
        spellings += names
        units.update({name.lower(): unit for name in names})
    return units, spellings


UNITS, _SPELLINGS = _build()
_SPELLINGS_LOWER = {s.lower(): s for s in _SPELLINGS}


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a measurement between units: miles to km, pounds to grams, Fahrenheit to Celsius, and more.

    Like convert(5, "km", "mi") or convert(100, "F", "C"). Knows length, mass, time, volume, speed, data
    size (KB = 1000 B, KiB = 1024 B) and temperature (C, F, K).

    Units include m, km, mi, ft, in, g, kg, lb, oz, s, min, h, day, ml, l, gal (US), cup, m/s, km/h, mph, kn,
    B, KB, MB, GB, KiB, MiB, bit, Mbit. Results are rounded to 12 significant digits.
    """
    if not math.isfinite(value):
        raise ValueError("value must be a finite number")
    source, target = lookup(from_unit), lookup(to_unit)
    if source.dimension != target.dimension:
        raise ValueError(
            f"cannot convert {source.dimension} to {target.dimension} "
            f"({from_unit!r} is a {source.dimension} unit, {to_unit!r} is a {target.dimension} unit)"
        )
    base = value * source.scale + source.offset
    if source.dimension == "temperature" and base < -1e-9:
        raise ValueError(f"{value:g} {source.name} is below absolute zero")
    result = (base - target.offset) / target.scale
    return float(f"{result:.{SIGNIFICANT}g}")


def lookup(name: str) -> Unit:
    """The unit called ``name``, or ``ValueError`` naming the closest known units."""
    key = _clean(name)
    unit = UNITS.get(key)
    if unit is None:
        close = difflib.get_close_matches(key, list(_SPELLINGS_LOWER), n=4, cutoff=0.5)
        hint = ", ".join(_SPELLINGS_LOWER[c] for c in close) or "m, km, mi, kg, lb, s, h, l, gal, km/h, mph, MB, C, F"
        raise ValueError(f"unknown unit {name!r}; closest known units: {hint}")
    return unit


def _clean(name: str) -> str:
    text = name.strip().lower().replace("°", "").replace("º", "").replace("µ", "u").replace("μ", "u")
    text = text.replace("³", "3").replace(".", "")
    text = re.sub(r"^(degrees?|deg)\s+", "", text)  # "degrees celsius", "deg f"
    text = re.sub(r"\s+per\s+", "/", text)  # "miles per hour"
    text = re.sub(r"\s*/\s*", "/", text)
    return " ".join(text.split())
