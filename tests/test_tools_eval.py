"""`slmchat eval tools`: the agent loop on BFCL items, scored by the AST rules, on the real model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from slmchat.eval.bfcl import BfclItem
from slmchat.eval.tools_eval import run_item, summarize
from slmchat.faces.cli import main
from slmchat.testing import ScriptedBackend
from tests.helpers import SHARED_DATA

DATA = SHARED_DATA / "bfcl"
needs_data = pytest.mark.shared_data("bfcl/questions", "bfcl/possible_answer")

AREA = {
    "name": "calculate_triangle_area",
    "description": "Calculate the area of a triangle given its base and height.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "The base of the triangle."},
            "height": {"type": "integer", "description": "The height of the triangle."},
            "unit": {"type": "string", "description": "The unit of measure (defaults to 'units')."},
        },
        "required": ["base", "height"],
    },
}
ITEM = BfclItem(
    "simple_0",
    [{"role": "user", "content": "Find the area of a triangle with a base of 10 units and height of 5 units."}],
    [AREA],
    [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}],
)


def score(*replies: str, gate: bool = True) -> tuple:
    backend = ScriptedBackend(replies)
    result = asyncio.run(run_item(backend, ITEM, style="compact", constrain=True, gate=gate))
    return result, backend


def test_the_first_valid_call_is_scored_and_recovery_counts() -> None:
    right, _ = score('{"tool": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}')
    assert right.ok and right.called == "calculate_triangle_area" and right.model_calls == 1
    assert right.tool_tokens < right.json_tool_tokens  # compact is smaller than the schema

    wrong, _ = score('{"tool": "calculate_triangle_area", "arguments": {"base": 5, "height": 10}}')
    assert not wrong.ok and wrong.reason.startswith("wrong value for 'base'")

    # a made-up name is recovered from, and the call after the recovery is the one scored
    fixed, backend = score('{"tool": "triangle_area", "arguments": {"base": 10}}',
                           '{"tool": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}')  # fmt: skip
    assert fixed.ok and fixed.recoveries == 1 and fixed.model_calls == 2
    assert "There is no tool named triangle_area. Closest: calculate_triangle_area." in backend.seen[1][-1].content

    answered, _ = score('{"answer": "The area is 25."}')
    assert not answered.ok and answered.reason == "no call" and answered.termination == "answered"


def test_an_irrelevant_question_is_not_sent_to_the_model_when_the_gate_drops_every_tool() -> None:
    item = BfclItem("irrelevance_x", [{"role": "user", "content": "Who wrote Hamlet?"}], [AREA], None)
    unasked = ScriptedBackend(["not asked"])
    result = asyncio.run(run_item(unasked, item, style="compact", constrain=True))
    assert result.ok and result.called is None and result.model_calls == 0 and result.offered_tool_tokens == 0
    assert unasked.seen == []  # the model was never called
    summary = summarize([result], irrelevance=True)
    assert summary["no_call_rate"] == 1.0 and "accuracy" not in summary

    ungated = asyncio.run(
        run_item(
            ScriptedBackend(['{"tool": "calculate_triangle_area", "arguments": {"base": 1, "height": 2}}']),
            item,
            style="compact",
            constrain=True,
            gate=False,
            ground=False,
        )
    )
    assert not ungated.ok and ungated.called == "calculate_triangle_area"  # offered anyway, and called
    assert ungated.offered_tool_tokens == ungated.tool_tokens

    invented = '{"tool": "calculate_triangle_area", "arguments": {"base": 1, "height": 2}}'
    grounded = asyncio.run(run_item(ScriptedBackend([invented]), item, style="compact", constrain=True, gate=False))
    assert grounded.ok and grounded.called is None and grounded.dropped == 1  # no value from the question: dropped
    assert grounded.model_calls == 1  # the evaluation stops there, without asking for a plain answer
    summary = summarize([grounded], irrelevance=True)
    assert (summary["wrong_call_rate"], summary["missed_call_rate"], summary["dropped_calls"]) == (0.0, None, 1)


def test_no_gate_reaches_the_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []

    async def fake_run_item(backend, item, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["gate"])
        raise SystemExit(0)

    monkeypatch.setattr("slmchat.eval.tools_eval.run_item", fake_run_item)
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps({"id": "a", "question": [[{"role": "user", "content": "x"}]], "function": []}))
    CliRunner().invoke(main, ["eval", "tools", str(questions), "--no-gate", "--model", "llamacpp:smollm2"])
    assert seen == [False]


@needs_data
@pytest.mark.parametrize("name", ["simple_python", "multiple", "parallel", "irrelevance"])
def test_the_command_runs_on_every_bfcl_file(name: str) -> None:
    args = ["eval", "tools", str(DATA / "questions" / f"BFCL_v4_{name}.json"), "--limit", "2", "--json"]
    answers = DATA / "possible_answer" / f"BFCL_v4_{name}.json"
    if answers.exists():
        args += ["--answers", str(answers)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    keys = {"n", "tool_tokens_mean", "prompt_tokens_mean", "completion_tokens_mean", "seconds_per_item", "recoveries"}
    assert keys <= set(data) and data["n"] == 2
    assert ("no_call_rate" if name == "irrelevance" else "accuracy") in data
    assert data["tool_tokens_mean"] < data["json_tool_tokens_mean"]


def test_bad_files_get_a_clear_error(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["eval", "tools", str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and "nope.json" in missing.output and "Traceback" not in missing.output
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "a", "question": [[{"role": "user", "content": "x"}]], "function": []}\n{oops\n')
    bad = CliRunner().invoke(main, ["eval", "tools", str(broken)])
    assert bad.exit_code != 0 and "line 2" in bad.output
