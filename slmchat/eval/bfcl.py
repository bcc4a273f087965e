"""Berkeley Function Calling Leaderboard (BFCL) data: load items, convert schemas, score calls.

Pure Python, no model calls. Scoring follows BFCL's AST checker, simplified:

- the call's name must be a ground-truth name (or that name with dots as underscores, the form
  APIs that forbid dots in tool names need);
- every required parameter is present; no parameter outside the spec or the accepted call;
- each value is among its accepted values: strings compare after `normalize`, an int counts as a
  float where the spec says float, lists compare element by element, dicts key by key against
  their own accepted lists;
- a parameter may be left out only when `""` is among its accepted values.

Irrelevance items have no ground truth: the right answer is no call (`no_call_ok`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.infra.errors import SlmchatError

# BFCL pseudo-types -> JSON Schema types. BFCL's AST checker (PYTHON_TYPE_MAPPING) takes "any"
# as a string, so a constrained model writes one; "long" and "double" appear in some specs.
_SCHEMA_TYPES = {
    "dict": "object", "float": "number", "tuple": "array", "any": "string", "long": "integer", "double": "number",
}  # fmt: skip
_JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object", "null"}
# JSON Schema (draft 2020-12) keywords kept by `to_json_schema`; everything else is dropped.
_SCHEMA_KEYS = {
    "type", "description", "title", "enum", "const", "default", "examples", "format",
    "properties", "required", "additionalProperties", "items", "prefixItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
}  # fmt: skip
# Python type a value must have for each spec type (checked before values are compared).
_PY_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "number": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "object": dict, "any": str,
}  # fmt: skip
_NOISE = re.compile(r"[\s,./\-_*^]")


#: The split of the BFCL files in shared/data (issue 15): every threshold, weight and prompt of the
#: tool path is chosen on "tune"; "heldout" is only reported. Files not named here (BFCL live_*,
#: anything else) are wholly held out.
TUNE_FILES = ("simple_python", "parallel")
HELDOUT_FILES = ("multiple",)
#: irrelevance is split by its item's first function name: a-m tune, the rest (n-z, digits) held out
SPLIT_FILE = "irrelevance"
Split = str  # "tune" | "heldout" | "all"


def category(path: Path) -> str:
    """``BFCL_v4_simple_python.json`` -> ``simple_python``."""
    return re.sub(r"^BFCL_v\d+_", "", path.stem)


def in_split(item: BfclItem, file_category: str, split: Split) -> bool:
    """Whether ``item`` of a file of ``file_category`` belongs to ``split``."""
    if split == "all":
        return True
    if file_category in TUNE_FILES:
        side = "tune"
    elif file_category == SPLIT_FILE:
        first = item.functions[0]["name"][:1].lower() if item.functions else ""
        side = "tune" if "a" <= first <= "m" else "heldout"
    else:
        side = "heldout"
    return side == split


@dataclass
class BfclItem:
    """One BFCL question: the user turn, the offered functions and the accepted calls."""

    id: str
    messages: list[dict[str, str]]
    functions: list[dict[str, Any]]
    ground_truth: list[dict[str, Any]] | None = None


def load_bfcl(
    questions: Path, answers: Path | None = None, limit: int | None = None, split: Split = "all"
) -> list[BfclItem]:
    """Read a BFCL questions file and, if given, its `possible_answer` file (the first `limit`
    items of `split`, see `in_split`)."""
    items = []
    for where, row in _read_lines(questions):
        try:
            item = BfclItem(str(row["id"]), list(row["question"][0]), list(row["function"]))
        except (KeyError, IndexError, TypeError) as exc:
            raise SlmchatError(f"{where} is not a BFCL question", 'expected {"id", "question", "function"}') from exc
        items.append(item)
    if answers is not None:
        truth: dict[str, list[dict[str, Any]]] = {}
        for where, row in _read_lines(answers):
            if not isinstance(row.get("ground_truth"), list) or "id" not in row:
                raise SlmchatError(f"{where} is not a BFCL answer", 'expected {"id", "ground_truth": [...]}')
            truth[str(row["id"])] = row["ground_truth"]
        ids = [item.id for item in items]
        if set(truth) != set(ids):
            odd = sorted(set(truth) ^ set(ids))
            raise SlmchatError(
                f"{answers}: ids do not match {questions.name} ({len(odd)} differ, e.g. {odd[:3]})",
                "pair each questions file with the possible_answer file of the same name",
            )
        for item in items:
            item.ground_truth = truth[item.id]
    file_category = category(questions)
    items = [item for item in items if in_split(item, file_category, split)]
    return items if limit is None else items[:limit]


def _read_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of a JSON-lines file, each with its `path: line N` for error messages."""
    if not path.is_file():
        raise SlmchatError(f"BFCL file not found: {path}", "see shared/data/README.md for where the data lives")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SlmchatError(f"{where} is not valid JSON ({exc.msg})", "one JSON object per line") from exc
        if not isinstance(row, dict):
            raise SlmchatError(f"{where} is not a JSON object", "one JSON object per line")
        rows.append((where, row))
    return rows


def to_json_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """Convert a BFCL parameter spec to standard JSON Schema (recursively; unknown keys dropped)."""
    schema: dict[str, Any] = {}
    for key, value in parameters.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "type":
            value = _SCHEMA_TYPES.get(value.lower(), value.lower()) if isinstance(value, str) else value
            if isinstance(value, str) and value not in _JSON_TYPES:
                continue  # a type JSON Schema does not know: no constraint rather than an invalid grammar
        elif key == "properties" and isinstance(value, dict):
            value = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = to_json_schema(value)
        elif key == "prefixItems" and isinstance(value, list):
            value = [to_json_schema(sub) for sub in value]
        schema[key] = value
    return schema


def normalize(text: str) -> str:
    """BFCL's string key: lower case, without whitespace and `,./-_*^`, single quotes as double."""
    return _NOISE.sub("", text).lower().replace("'", '"')


def no_call_ok(call_name: str | None) -> bool:
    """Irrelevance scoring: right when the model called nothing."""
    return not call_name


def score_call(
    call_name: str, arguments: dict[str, Any], functions: list[dict[str, Any]], ground_truth: list[dict[str, Any]]
) -> tuple[bool, str]:
    """Score one call against any ground-truth entry of that name: (ok, reason why not or "")."""
    entries = [(name, accepted) for entry in ground_truth for name, accepted in entry.items()]
    candidates = [(name, accepted) for name, accepted in entries if call_name in (name, name.replace(".", "_"))]
    if not candidates:
        return False, f"wrong function {call_name!r}: expected {sorted({name for name, _ in entries})}"
    if not isinstance(arguments, dict):
        return False, f"arguments are not an object: {arguments!r}"
    reasons = []
    for name, accepted in candidates:
        spec = next((f.get("parameters", {}) for f in functions if f.get("name") == name), None)
        if spec is None:
            return False, f"function {name!r} is not among the offered functions"
        reason = _check_arguments(arguments, spec, accepted)
        if not reason:
            return True, ""
        reasons.append(reason)
    return False, reasons[0]


def score_calls(
    calls: list[tuple[str, dict[str, Any]]], functions: list[dict[str, Any]], ground_truth: list[dict[str, Any]] | None
) -> tuple[bool, str]:
    """Score a whole answer: each ground-truth entry matched by its own call, in any order.

    With no ground truth (irrelevance) the answer is right only when there are no calls.
    """
    if ground_truth is None:
        return (True, "") if not calls else (False, f"expected no call, got {calls[0][0]!r}")
    if len(calls) != len(ground_truth):
        return False, f"expected {len(ground_truth)} call(s), got {len(calls)}"
    results = [[score_call(name, args, functions, [entry]) for name, args in calls] for entry in ground_truth]
    owner: dict[int, int] = {}  # call index -> ground-truth index (bipartite matching by augmenting paths)

    def place(entry: int, seen: set[int]) -> bool:
        for call, (ok, _) in enumerate(results[entry]):
            if ok and call not in seen:
                seen.add(call)
                if call not in owner or place(owner[call], seen):
                    owner[call] = entry
                    return True
        return False

    for entry, row in enumerate(results):
        if not place(entry, set()):
            reason = next((reason for ok, reason in row if not ok), "each matching call is needed elsewhere")
            return False, f"no call matches expected call {entry + 1} ({next(iter(ground_truth[entry]))}): {reason}"
    return True, ""


def _check_arguments(arguments: dict[str, Any], spec: dict[str, Any], accepted: dict[str, list[Any]]) -> str:
    """Why `arguments` is not an accepted call of a function with parameters `spec`, or ""."""
    properties = spec.get("properties", {})
    for name in spec.get("required", []):
        if name not in arguments:
            return f"missing required parameter {name!r}"
    for name, value in arguments.items():
        if name not in properties:
            return f"unknown parameter {name!r}"
        if name not in accepted:
            return f"unexpected parameter {name!r}"
        reason = _check_value(name, value, accepted[name], properties[name])
        if reason:
            return reason
    for name, values in accepted.items():
        if name not in arguments and "" not in values:
            return f"missing parameter {name!r} (it has no accepted default)"
    return ""


def _check_value(name: str, value: Any, accepted: list[Any], spec: dict[str, Any]) -> str:
    """Type check against the spec, then look for `value` among `accepted`; a reason or ""."""
    kind = spec.get("type")
    if kind == "float" and type(value) is int:
        value = float(value)
    if isinstance(value, tuple):
        value = list(value)
    expected = _PY_TYPES.get(kind) if isinstance(kind, str) else None
    if expected is not None and type(value) is not expected:
        concrete = [option for option in accepted if option != ""]
        # BFCL: a ground truth typed unlike its spec (True for a string, None for a float) is taken as is.
        if not concrete or type(value) is not type(concrete[0]):
            return f"wrong type for {name!r}: expected {kind}, got {type(value).__name__}"
        spec = {}
    if any(_same(value, option, spec) for option in accepted):
        return ""
    return f"wrong value for {name!r}: {value!r} not in {accepted!r}"


def _same(value: Any, option: Any, spec: dict[str, Any]) -> bool:
    """Whether `value` equals one accepted `option` under BFCL's normalisation."""
    if isinstance(value, str) and isinstance(option, str):
        return normalize(value) == normalize(option)
    if isinstance(value, list | tuple) and isinstance(option, list):
        items = spec.get("items") if isinstance(spec.get("items"), dict) else {}
        return len(value) == len(option) and all(_same(v, o, items) for v, o in zip(value, option, strict=True))
    if isinstance(value, dict) and isinstance(option, dict):
        return _dict_same(value, option, spec.get("properties") or {})
    if isinstance(value, bool) or isinstance(option, bool):
        return type(value) is type(option) and value == option
    if spec.get("type") == "integer" and isinstance(value, float):
        return False
    return value == option


def _dict_same(value: dict[str, Any], option: dict[str, Any], properties: dict[str, Any]) -> bool:
    """A dict against one accepted dict whose values are lists of accepted values (keys may be optional)."""
    for key, item in value.items():
        accepted = option.get(key)
        if not isinstance(accepted, list):
            return False
        spec = properties.get(key) if isinstance(properties.get(key), dict) else {}
        if not any(_same(item, choice, spec) for choice in accepted):
            return False
    return all(key in value or (isinstance(values, list) and "" in values) for key, values in option.items())
