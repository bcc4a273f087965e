"""Load a routing CSV: one prompt per row with the weak and the strong model's quality on it.

The columns are found, not named: `prompt`, then the first two other columns whose values all
parse as booleans (True/False = 1/0) or finite numbers; the first is the weak model, the second
the strong one. Text columns such as gsm8k's `*_response` are skipped. If a
`contaminated_prompts.jsonl` sits beside the file, rows whose prompt equals one of its
`eval_prompt` texts are dropped (RouteLLM's rule).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmchat.infra.errors import SlmchatError

CONTAMINATED_FILE = "contaminated_prompts.jsonl"
_BOOLS = {"true": 1.0, "false": 0.0}


@dataclass(frozen=True, eq=False)
class RoutingData:
    """Prompts with the weak and strong model's quality on each (1/0 for correct, or any score)."""

    name: str
    prompts: list[str]
    weak: np.ndarray
    strong: np.ndarray
    weak_model: str = "weak"
    strong_model: str = "strong"
    excluded: int = 0  # contaminated rows dropped
    path: Path | None = None

    def __post_init__(self) -> None:
        if not (len(self.prompts) == len(self.weak) == len(self.strong)):
            raise ValueError("prompts, weak and strong must have the same length")

    def __len__(self) -> int:
        return len(self.prompts)


#: how `slmchat eval routing --split` divides the files (issue 15): sorted by file name, every other
#: file starting with the 2nd is HELD-OUT (never looked at while choosing settings), the rest TUNING
SPLIT_RULE = "files sorted by name; held-out = the 2nd, 4th, 6th, ...; tuning = the 1st, 3rd, 5th, ..."


def split_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(tuning, held_out) by ``SPLIT_RULE``. With the 30 public files: tuning holds GSM8K + 14 MMLU
    subjects, held-out 15 MMLU subjects. The rule looks at names only, never at the data."""
    ordered = sorted(paths, key=lambda path: (Path(path).name, str(path)))
    return ordered[0::2], ordered[1::2]


def parse_score(text: str) -> float | None:
    """`True`/`False` (any case) as 1/0, or a finite number; None for anything else."""
    text = text.strip()
    if text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_contaminated(path: Path) -> set[str]:
    """The prompt texts listed in a `contaminated_prompts.jsonl` (its `eval_prompt` field)."""
    prompts: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SlmchatError(f"{path}:{number}: not JSON ({exc.msg})", "each line must be one JSON object") from exc
        text = item if isinstance(item, str) else item.get("eval_prompt") if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise SlmchatError(f"{path}:{number}: no eval_prompt text", 'each line needs {"eval_prompt": "..."}')
        prompts.add(text)
    return prompts


def load_routing_csv(path: str | Path, *, exclude_contaminated: bool = True) -> RoutingData:
    """Read one routing CSV; see the module docstring for how the columns are found."""
    path = Path(path)
    header, rows = _read_csv(path)
    lower = [name.strip().lower() for name in header]
    if "prompt" not in lower:
        raise SlmchatError(
            f"{path}: no 'prompt' column (columns: {', '.join(header) or 'none'})",
            "a routing CSV needs a 'prompt' column, then a weak-model and a strong-model score column",
        )
    prompt_col = lower.index("prompt")
    score_cols: list[int] = []
    rejected: list[str] = []
    for col, name in enumerate(header):
        if col == prompt_col or len(score_cols) == 2:
            continue
        bad = next((row[col] for row in rows if parse_score(row[col]) is None), None)
        if bad is None:
            score_cols.append(col)
        else:
            rejected.append(f"{name!r} (e.g. {bad[:30]!r})")
    if len(score_cols) < 2:
        found = ", ".join(repr(header[c]) for c in score_cols) or "none"
        raise SlmchatError(
            f"{path}: need two score columns (weak model, then strong model); found {found}"
            + (f"; not scores: {', '.join(rejected)}" if rejected else ""),
            "score columns hold True/False or numbers in every row",
        )
    prompts = [row[prompt_col] for row in rows]
    weak = np.array([parse_score(row[score_cols[0]]) for row in rows], dtype=float)
    strong = np.array([parse_score(row[score_cols[1]]) for row in rows], dtype=float)
    excluded = 0
    contaminated = path.with_name(CONTAMINATED_FILE)
    if exclude_contaminated and contaminated.is_file():
        drop = load_contaminated(contaminated)
        keep = np.array([p not in drop for p in prompts], dtype=bool)
        excluded = int((~keep).sum())
        prompts = [p for p, k in zip(prompts, keep, strict=True) if k]
        weak, strong = weak[keep], strong[keep]
    return RoutingData(
        name=path.stem,
        prompts=prompts,
        weak=weak,
        strong=strong,
        weak_model=header[score_cols[0]],
        strong_model=header[score_cols[1]],
        excluded=excluded,
        path=path,
    )


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            rows = [row for row in reader if row]
    except FileNotFoundError as exc:
        raise SlmchatError(f"{path}: no such file", "give the path of a routing CSV") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise SlmchatError(f"{path}: not a readable CSV ({exc})", "save it as UTF-8 CSV with a header row") from exc
    if not rows:
        raise SlmchatError(f"{path}: no rows", "a routing CSV needs a header row and at least one prompt")
    for number, row in enumerate(rows, 1):
        if len(row) != len(header):
            raise SlmchatError(
                f"{path}: data row {number} has {len(row)} fields, the header {len(header)}",
                "quote fields that contain commas or newlines",
            )
    return header, rows
