"""ReplanConfig: the one validation of the replan settings, and the one place their seconds become ticks."""

import math

import pytest

from wp_policy.runtime import ReplanConfig
from wp_policy.runtime.replan import AfterLast, Lookahead


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "sometimes"}, r"replan mode must be one of \['after_last', 'lookahead'\], got 'sometimes'"),
        ({"pairs_per_plan": -1}, r"pairs_per_plan must be >= 0 \(0: every pair of a plan\), got -1"),
        ({"plan_lead_s": -0.1}, r"plan_lead_s must be a number of seconds >= 0, got -0\.1"),
        ({"fill_lead_s": math.nan}, r"fill_lead_s must be a number of seconds >= 0, got nan"),
        ({"mode": "x", "pairs_per_plan": -2}, r"replan mode must be .*; pairs_per_plan must be >= 0"),
        ({"pair_start": "where"}, r"pair_start must be one of \['planned', 'measured'\], got 'where'"),
        ({"mode": "lookahead", "pair_start": "measured"}, r"pair_start measured needs mode after_last"),
    ],
)
def test_bad_values_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        ReplanConfig(**fields)


def test_seconds_become_ticks_rounded_up_at_the_control_rate():
    config = ReplanConfig("lookahead", pairs_per_plan=2, plan_lead_s=0.2, fill_lead_s=0.15)
    # 0.15 s at 20 Hz is 3 ticks, not 4 (float noise); 2.25 ticks at 15 Hz round up to 3
    assert config.strategy(20.0) == Lookahead(pairs_per_plan=2, lead_ticks=4, fill_lead_ticks=3)
    assert config.strategy(15.0) == Lookahead(pairs_per_plan=2, lead_ticks=3, fill_lead_ticks=3)
    assert ReplanConfig("lookahead", plan_lead_s=0.0, fill_lead_s=0.0).strategy(20.0) == Lookahead()
    assert ReplanConfig(pairs_per_plan=3).strategy(20.0) == AfterLast(pairs_per_plan=3)  # leads unused
    assert ReplanConfig(pair_start="measured").strategy(20.0) == AfterLast(measured_starts=True)


def test_the_strategies_decide_when_to_plan_and_fill():
    after_last, lookahead = AfterLast(), Lookahead(lead_ticks=4, fill_lead_ticks=2)
    assert not after_last.wants_early_plan(True, 0) and not after_last.fills_now(0, 0)
    assert not after_last.appends_answer and lookahead.appends_answer
    assert lookahead.wants_early_plan(True, 9) and lookahead.wants_early_plan(False, 4)
    assert not lookahead.wants_early_plan(False, 5)
    assert lookahead.fills_now(0, 99) and lookahead.fills_now(1, 2) and not lookahead.fills_now(1, 3)


def test_node_parameters_round_trip():
    config = ReplanConfig("lookahead", 1, 0.25, 0.05)
    assert config.params() == {"replan_mode": "lookahead", "pairs_per_plan": 1, "plan_lead_s": 0.25,
                               "fill_lead_s": 0.05, "pair_start": "planned"}
    assert ReplanConfig.from_params(config.params()) == config
    measured = ReplanConfig(pair_start="measured")
    assert ReplanConfig.from_params(measured.params()) == measured
