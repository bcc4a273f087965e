"""Safe arithmetic for small models: parse with ``ast`` and evaluate only whitelisted nodes.

Nothing is passed to ``eval`` or ``exec``. Each node of the parsed expression is checked
against a short list (numbers, arithmetic operators, a few math functions and constants);
anything else is refused with a ``ValueError`` that says what is allowed.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

MAX_LENGTH = 500  # characters in an expression
MAX_EXPONENT = 1000  # largest |exponent| accepted by **
MAX_DIGITS = 1000  # largest integer result, in decimal digits
MAX_ROUND_DIGITS = 100  # largest |ndigits| accepted by round()
SIGNIFICANT = 12  # float results are rounded to this many significant digits
_INT_LIMIT = 10**MAX_DIGITS

Number = int | float


def _round(value: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(value)
    if float(ndigits) != int(ndigits) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise ValueError(f"round() takes a whole number of digits between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    return round(value, int(ndigits))


def _log(value: Number, base: Number | None = None) -> float:
    return math.log(value) if base is None else math.log(value, base)


CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

#: name -> (function, fewest arguments, most arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (lambda *args: min(args), 1, 50),
    "max": (lambda *args: max(args), 1, 50),
    "log": (_log, 1, 2),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
}

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}

_ALLOWED = "numbers, + - * / // % ** (or ^), parentheses, " + ", ".join([*FUNCTIONS, *CONSTANTS])
# "x" means times only between numbers or brackets, so names such as max and exp are untouched
_TIMES = re.compile(r"(?<=[\d.)\s])[xX](?=\s*[\d.(+-]|\s+[a-zA-Z_])")
#: how to write an expression, without an example: a small model calls an example verbatim (37 * 91 became
#: calculate('2 * (3 + 4)') after an error text that suggested it)
_HOW = "write the user's numbers with + - * / ** % and ( )"
_SPELLINGS = {"×": "*", "·": "*", "÷": "/", "−": "-", "^": "**"}


def calculate(expression: str) -> float | int:
    """Calculate a math expression: add, subtract, multiply, divide, percent of a number, powers, square roots.

    Write the expression like "2 * (3 + 4) ^ 2", "0.125 * 640" or "sqrt(2) / 3". Knows + - * / // % ^ ( ),
    sqrt, abs, round, min, max, log, exp, sin, cos, tan (radians), pi and e.

    ``^`` means power and ``x``/``×`` between numbers mean times. ``log(x)`` is natural, ``log(x, base)`` any base.
    Float results are rounded to 12 significant digits; whole floats come back as ints. Anything else, division
    by zero, exponents over 1000 and results over 1000 digits raise ``ValueError``.
    """
    text = _normalise(expression)
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ValueError(f"cannot parse {expression.strip()!r}; {_HOW}") from None
    try:
        return _tidy(_eval(tree.body))
    except ZeroDivisionError:
        raise ValueError("division by zero: the right side of /, // or % must not be 0") from None
    except OverflowError:
        raise ValueError("the result is too large to compute") from None
    except RecursionError:
        raise ValueError("the expression is nested too deeply") from None


def _normalise(expression: str) -> str:
    text = expression.strip().rstrip("=").strip()
    if not text:
        raise ValueError("the expression is empty; write the arithmetic from the user's question")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    for spelling, python in _SPELLINGS.items():
        text = text.replace(spelling, python)
    return _TIMES.sub("*", text)


def _eval(node: ast.AST) -> Number:
    match node:
        case ast.Constant(value=value) if type(value) in (int, float):
            return _checked(value)
        case ast.BinOp(left=left, op=ast.Pow(), right=right):
            return _checked(_power(_eval(left), _eval(right)))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            return _checked(_BINARY[type(op)](_eval(left), _eval(right)))
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _eval(operand)
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            return _call(name, args)
    raise ValueError(_refusal(node))


def _call(name: str, args: list[ast.expr]) -> Number:
    function, fewest, most = FUNCTIONS[name]
    if not fewest <= len(args) <= most:
        count = str(fewest) if fewest == most else f"{fewest} to {most}"
        raise ValueError(f"{name}() takes {count} argument(s), got {len(args)}")
    values = [_eval(arg) for arg in args]
    try:
        result = function(*values)
    except (ValueError, TypeError) as exc:
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
        raise ValueError(f"{name}({shown}) is undefined ({exc})") from None
    return _checked(result)


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"the exponent is too large; at most {MAX_EXPONENT} is allowed")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log10(abs(base)) > MAX_DIGITS:
            raise ValueError(f"the result would have more than {MAX_DIGITS} digits")
    result = base**exponent
    if isinstance(result, complex):
        raise ValueError("the result is not a real number (a negative base needs a whole exponent)")
    return result


def _checked(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("the result is too large to compute")
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise ValueError(f"the result would have more than {MAX_DIGITS} digits")
    return value


def _tidy(value: Number) -> Number:
    if isinstance(value, float):
        value = float(f"{value:.{SIGNIFICANT}g}")
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
    return value


def _refusal(node: ast.AST) -> str:
    match node:
        case ast.Name(id=name) if name in FUNCTIONS:
            return f"{name} is a function; call it like {name}(2)"
        case ast.Name(id=name):
            return f"unknown name {name!r}; allowed: {_ALLOWED}"
        case ast.Call(func=ast.Name(id=name)) if name in FUNCTIONS:
            return f"{name}() takes plain positional numbers only"
        case ast.Call():
            return f"only these functions can be called: {', '.join(FUNCTIONS)}"
        case ast.Attribute():
            return f"attributes (a.b) are not allowed; allowed: {_ALLOWED}"
        case ast.Constant(value=str()):
            return f"text is not a number; {_HOW}"
        case ast.Constant():
            return f"{node.value!r} is not a real number"
    return f"{type(node).__name__} is not allowed; allowed: {_ALLOWED}"
