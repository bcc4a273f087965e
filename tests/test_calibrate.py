"""Calibrating the threshold from the user's own turns, and the feedback it learns from."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from slmchat.faces.cli import main
from slmchat.infra import paths
from slmchat.infra.config import load_config, write_template
from slmchat.infra.errors import SlmchatError
from slmchat.infra.store import Store, TurnRecord
from slmchat.routing.calibrate import for_error_costs, for_share, save_threshold


def store_turns(scores: list[float], tier: str = "small", good: list[bool | None] | None = None) -> Store:
    """Turns in the user's real history database, each with the router's score in its event."""
    store = Store(paths.database_file())
    cid = store.new_conversation()
    for i, score in enumerate(scores):
        decision = {"tier": tier, "score": score, "override": None}
        record = TurnRecord(cid, f"q{i}", "a", "ok", tier, "m", "r", None,
                            [{"kind": "route_decided", "decision": decision}], None)  # fmt: skip
        turn_id = store.save_turn(record)
        if good is not None and good[i] is not None:
            store.set_feedback(turn_id, bool(good[i]))
    return store


def turn(score: float, good: bool | None, tier: str = "small", escalated: bool = False) -> dict:
    return {"score": score, "good": good, "tier": tier, "escalated": escalated}


def test_share_threshold_sends_that_share_large() -> None:
    scores = np.linspace(0, 0.99, 100)
    result = for_share(scores, 0.2)
    assert result.threshold == pytest.approx(0.8) and result.large_share == pytest.approx(0.2)
    assert for_share(scores, 0.0).large_share == 0  # scores are below 1: a threshold of 1 sends none
    with pytest.raises(SlmchatError, match="at least 10"):
        for_share([0.5] * 3, 0.2)
    with pytest.raises(SlmchatError, match="between 0 and 1"):
        for_share(scores, 1.5)


def test_error_costs_pick_the_cheapest_threshold() -> None:
    turns = [turn(0.1, True), turn(0.2, True), turn(0.3, True), turn(0.6, False), turn(0.7, None, escalated=True),
             turn(0.8, True), turn(0.9, None, tier="large")]  # fmt: skip
    cheap_misses = for_error_costs(turns, missed=0.1, wasted=1.0)
    assert cheap_misses.threshold > 0.8  # never worth a large call
    assert cheap_misses.expected_cost == pytest.approx(0.2) and cheap_misses.labelled == 6
    costly_misses = for_error_costs(turns, missed=10.0, wasted=1.0)
    assert costly_misses.threshold == pytest.approx(0.6)  # catch both failures, waste one call (0.8)
    assert costly_misses.expected_cost == pytest.approx(1.0)
    with pytest.raises(SlmchatError, match="/good and /bad"):
        for_error_costs(turns[:3], 1, 1)


def test_saving_keeps_the_users_comments() -> None:
    write_template()
    save_threshold(paths.config_file(), 0.37)
    text = paths.config_file().read_text()
    assert "# slmchat configuration." in text and "# fast = " in text
    assert load_config().routing.threshold == 0.37
    save_threshold(paths.config_file(), 0.4)
    assert load_config().routing.threshold == 0.4 and text.count("[routing]") == 1


def test_calibrate_command_shows_the_effect_and_asks_first() -> None:
    store_turns([i / 50 for i in range(50)])
    runner = CliRunner()
    refused = runner.invoke(main, ["route", "calibrate", "--large-share", "0.2"], input="n\n")
    assert "threshold " in refused.output and "-> 0.8000" in refused.output
    assert "expected large-tier share on your last 50 turns: 20.0%" in refused.output
    assert "tied" not in refused.output and refused.output.endswith("not saved\n")
    assert load_config().routing.threshold is None  # not saved
    saved = runner.invoke(main, ["route", "calibrate", "--large-share", "0.2", "--yes"])
    assert saved.exit_code == 0 and load_config().routing.threshold == 0.8
    assert f"saved: [routing] threshold = 0.8000 in {paths.config_file()}" in saved.output
    assert "to undo: delete the threshold line under [routing]" in saved.output  # there was none before
    again = runner.invoke(main, ["route", "calibrate", "--large-share", "0.1", "--yes"])
    assert "to undo: set threshold = 0.8000 under [routing]" in again.output


def test_calibrate_says_why_tied_scores_miss_the_share() -> None:
    store_turns([0.1] * 8 + [0.5] * 4)  # a third of the turns share the top score
    shown = CliRunner().invoke(main, ["route", "calibrate", "--large-share", "0.2"], input="n\n").output
    assert "expected large-tier share on your last 12 turns: 33.3%" in shown
    assert "(4 of those turns have exactly the score 0.5000, so they go to the same tier" in shown


def test_calibrate_from_feedback_and_bad_arguments() -> None:
    store_turns([0.1, 0.2, 0.3, 0.6, 0.7, 0.8], good=[True, True, True, False, False, True])
    result = CliRunner().invoke(main, ["route", "calibrate", "--error-costs", "10,1", "--yes"])
    assert result.exit_code == 0, result.output
    assert "lowest cost on 6 judged small-tier turns: 1" in result.output
    assert "expected large-tier share on your last 6 turns: 50.0%" in result.output  # all turns, not the judged
    assert load_config().routing.threshold == 0.6
    both = CliRunner().invoke(main, ["route", "calibrate", "--large-share", "0.2", "--error-costs", "1,1"])
    assert both.exit_code == 1 and "exactly one of" in both.output
    bad = CliRunner().invoke(main, ["route", "calibrate", "--error-costs", "lots"])
    assert "is not MISSED,WASTED" in bad.output


def test_feedback_command_judges_the_latest_turn() -> None:
    store = store_turns([0.5, 0.5])
    result = CliRunner().invoke(main, ["feedback", "bad"])
    assert result.exit_code == 0 and result.output.strip() == "noted: turn 2 was bad"
    CliRunner().invoke(main, ["feedback", "good", "--turn", "1"])
    assert [t["good"] for t in store.routed_turns()] == [False, True]
    missing = CliRunner().invoke(main, ["feedback", "good", "--turn", "99"])
    assert missing.exit_code == 1 and "no turn 99" in missing.output
