"""Tests for unit conversion."""

import pytest
import slmchat_units
from slmchat_units import convert, lookup

from slmchat.tools import tool_from_function


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (1, "km", "m", 1000),
        (1, "mi", "km", 1.609344),
        (12, "in", "ft", 1),
        (3, "feet", "yards", 1),
        (5, "metres", "cm", 500),
        (1, "nautical mile", "m", 1852),
        (1, "kg", "lb", 2.20462262185),
        (16, "oz", "lb", 1),
        (500, "g", "kg", 0.5),
        (1, "stone", "pounds", 14),
        (1, "tonne", "kg", 1000),
        (90, "min", "h", 1.5),
        (2, "days", "hours", 48),
        (1, "week", "day", 7),
        (1, "year", "days", 365.25),
        (1, "gal", "l", 3.785411784),
        (1, "l", "ml", 1000),
        (1, "cup", "fl oz", 8),
        (1, "m³", "l", 1000),
        (100, "km/h", "m/s", 27.7777777778),
        (60, "mph", "km/h", 96.56064),
        (10, "kph", "kmh", 10),
        (1, "knot", "km/h", 1.852),
        (1, "GB", "MB", 1000),
        (1, "GiB", "MiB", 1024),
        (1, "KiB", "B", 1024),
        (8, "bits", "byte", 1),
        (100, "Mbit", "MB", 12.5),
    ],
)
def test_conversions(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (0, "C", "F", 32),
        (100, "C", "F", 212),
        (-40, "F", "C", -40),
        (98.6, "°F", "°C", 37),
        (0, "K", "C", -273.15),
        (25, "celsius", "kelvin", 298.15),
        (32, "degrees fahrenheit", "K", 273.15),
        (300, "K", "F", 80.33),
    ],
)
def test_temperature_is_affine(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target) == pytest.approx(expected)


def test_below_absolute_zero() -> None:
    with pytest.raises(ValueError, match="absolute zero"):
        convert(-300, "C", "K")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("m", "m"),
        ("meter", "m"),
        ("Metres", "m"),
        (" KM ", "km"),
        ("miles", "mi"),
        ("inches", "in"),
        ("lbs", "lb"),
        ("fl. oz.", "fl oz"),
        ("miles per hour", "mph"),
        ("km / h", "km/h"),
        ("kb", "KB"),
        ("mins", "min"),
        ("µm", "um"),
        ("deg C", "C"),
    ],
)
def test_aliases(name: str, canonical: str) -> None:
    assert lookup(name).name == canonical


def test_no_spelling_is_claimed_twice() -> None:
    lowered = [s.lower() for s in slmchat_units._SPELLINGS]
    assert len(lowered) == len(set(lowered))


def test_unknown_unit_names_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown unit 'kilometr'.*kilometer"):
        convert(1, "kilometr", "m")


def test_unknown_unit_without_close_match_lists_examples() -> None:
    with pytest.raises(ValueError, match="closest known units: m, km"):
        convert(1, "zzzzzz", "m")


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [("kg", "m", "cannot convert mass to length"), ("C", "s", "cannot convert temperature to time")],
)
def test_mismatched_dimensions(source: str, target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert(1, source, target)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_value(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        convert(value, "m", "km")


def test_tool_spec() -> None:
    made = tool_from_function(convert)
    assert made.spec.required == ["value", "from_unit", "to_unit"]
    assert made.run({"value": "5", "from_unit": "km", "to_unit": "m"}) == 5000
