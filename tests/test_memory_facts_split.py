"""The fact-extraction benchmark's split is by source and follows its written rule (issue 15)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.bench.bench_extraction import SPLITS, load_rows, taskmaster_split

TASKMASTER = Path("/work/shared/data/dialogs/taskmaster4/data_07.json")


def conversations(split: str) -> set[str]:
    found = (re.search(r"(?:conversation_id|convo_id)=(\S+)", row["source"]) for row in load_rows(split))
    return {match.group(1) for match in found if match}


def test_no_conversation_is_in_both_splits() -> None:
    assert conversations("tune") and conversations("heldout")
    assert not conversations("tune") & conversations("heldout")


def test_rows_are_labelled_and_unique() -> None:
    ids = [row["id"] for split in SPLITS for row in load_rows(split)]
    assert len(ids) == len(set(ids))
    for split in SPLITS:
        for row in load_rows(split):
            assert isinstance(row["text"], str) and isinstance(row["facts"], list), row


def test_held_out_taskmaster_conversations_sort_in_the_second_half() -> None:
    if not TASKMASTER.exists():
        return  # the shared data is not on this machine: the disjointness test above still holds
    ids = [c["conversation_id"] for c in json.loads(TASKMASTER.read_text())]
    held = {c for c in conversations("heldout") if c.startswith("dlg-")}
    assert held and all(taskmaster_split(c, ids) == "heldout" for c in held)
    tuned_new = {
        c
        for row in load_rows("tune")
        if row["source"].startswith("taskmaster4") and row["id"] not in _first_file_ids()
        for c in re.findall(r"conversation_id=(\S+)", row["source"])
    }
    assert all(taskmaster_split(c, ids) == "tune" for c in tuned_new)


def _first_file_ids() -> set[str]:
    path = Path(__file__).parent / "data" / "memory_extraction.jsonl"
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
