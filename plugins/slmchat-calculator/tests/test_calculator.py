"""Tests for the safe calculator."""

import math
import re

import pytest
from slmchat_calculator import calculate

from slmchat.tools import tool_from_function


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("7 / 2", 3.5),
        ("6 / 3", 2),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("-3 + +5", 2),
        ("0.1 + 0.2", 0.3),
        ("1_000 * 3", 3000),
        ("2.5e3", 2500),
    ],
)
def test_arithmetic(expression: str, expected: float) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("10 - 4 - 3", 3),
        ("2 * (3 + (4 - 1)) / 3", 4),
    ],
)
def test_precedence(expression: str, expected: float) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("3 x 4", 12), ("3x4", 12), ("(2)x(5)", 10), ("6 × 7", 42), ("2^10", 1024), ("2 ^ 3 ^ 2", 512), ("8 ÷ 2", 4)],
)
def test_human_spellings(expression: str, expected: float) -> None:
    assert calculate(expression) == expected


def test_functions_and_constants() -> None:
    assert calculate("sqrt(16)") == 4
    assert calculate("abs(-2.5)") == 2.5
    assert calculate("round(3.14159, 2)") == 3.14
    assert calculate("round(2.6)") == 3
    assert calculate("min(4, 2, 8)") == 2
    assert calculate("max(4, 2, 8)") == 8
    assert calculate("log(e)") == 1
    assert calculate("log(8, 2)") == 3
    assert calculate("exp(0)") == 1
    assert calculate("sin(0) + cos(0)") == 1
    assert calculate("tan(pi / 4)") == 1
    assert calculate("2 * pi") == pytest.approx(2 * math.pi)


def test_names_like_max_keep_their_x() -> None:
    assert calculate("max(1, 2) x exp(0)") == 2


def test_trailing_equals_is_ignored() -> None:
    assert calculate("2 + 2 =") == 4


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd')",
        "eval('1')",
        "x",
        "math.pi",
        "sqrt",
        "sqrt(x=4)",
        "[1, 2]",
        "(1, 2)",
        "1 if 1 else 2",
        "lambda: 1",
        "'abc'",
        "True + 1",
        "1j",
        "1 < 2",
        "a := 3",
        "pi(2)",
    ],
)
def test_refuses_anything_outside_the_whitelist(expression: str) -> None:
    with pytest.raises(ValueError):
        calculate(expression)


def test_refusal_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="only these functions can be called: sqrt"):
        calculate("open('x')")


@pytest.mark.parametrize(
    "expression", ["9 ** 9 ** 9", "2 ** 100000", "10 ** 1001", "(10 ** 999) ** 2", "(10 ** 500) * (10 ** 500)"]
)
def test_refuses_huge_results(expression: str) -> None:
    with pytest.raises(ValueError, match=r"too large|digits"):
        calculate(expression)


@pytest.mark.parametrize("expression", ["exp(1000)", "1e308 * 10", "10.0 ** 400", "sin(10 ** 400)"])
def test_refuses_float_overflow(expression: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        calculate(expression)


def test_refuses_round_with_huge_digits() -> None:
    with pytest.raises(ValueError, match="round"):
        calculate("round(10 ** 900, -1000000000)")


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "5 % 0", "1.5 / (2 - 2)", "0 ** -1"])
def test_division_by_zero(expression: str) -> None:
    with pytest.raises(ValueError, match="division by zero"):
        calculate(expression)


@pytest.mark.parametrize("expression", ["sqrt(-1)", "log(0)", "(-8) ** 0.5"])
def test_math_domain(expression: str) -> None:
    with pytest.raises(ValueError):
        calculate(expression)


@pytest.mark.parametrize("expression", ["", "   ", "=", "2 +", "hello world", "((1)", "2 ** ** 3", "\x00"])
def test_empty_or_garbage(expression: str) -> None:
    with pytest.raises(ValueError):
        calculate(expression)


def test_length_cap() -> None:
    with pytest.raises(ValueError, match="at most 500"):
        calculate("1 + " * 200 + "1")


def test_deep_nesting_is_refused_cleanly() -> None:
    with pytest.raises(ValueError):
        calculate("(" * 240 + "1" + ")" * 240)


def test_wrong_argument_count() -> None:
    with pytest.raises(ValueError, match="takes 1 argument"):
        calculate("sqrt(1, 2)")


def test_tool_spec() -> None:
    made = tool_from_function(calculate)
    assert made.name == "calculate"
    assert made.spec.required == ["expression"]
    assert not made.spec.requires_approval
    assert made.run({"expression": "2 x 21"}) == 42


@pytest.mark.parametrize("bad", ["", "   ", "what is it", "'seven'", "3 +", "(("])
def test_errors_give_no_example_a_small_model_could_call(bad: str) -> None:
    """An example in an error text reaches the model as an instruction: '2 * (3 + 4)' was called verbatim."""
    with pytest.raises(ValueError) as raised:
        calculate(bad)
    assert not re.search(r"\d", str(raised.value).replace(bad.strip(), "")), str(raised.value)
