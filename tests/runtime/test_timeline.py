"""Timeline: the time base the planner and the filler share (new timelines, cuts, stamps from elsewhere)."""

from wp_policy.runtime.timeline import JUMP_NS, Timeline, jumps_back

S = 1_000_000_000


def test_a_stamp_far_back_starts_a_new_timeline():
    t = Timeline()
    assert not t.observe(5 * S) and t.newest_ns == 5 * S
    assert not t.observe(5 * S - JUMP_NS) and t.newest_ns == 5 * S  # a step back within the jump: same timeline
    t.cut()
    epoch = t.epoch
    assert t.observe(5 * S - JUMP_NS - 1)
    assert t.newest_ns == 5 * S - JUMP_NS - 1 and t.cut_ns == -1 and t.epoch == epoch + 1


def test_a_cut_makes_older_plans_stale_and_bumps_the_epoch():
    t = Timeline()
    assert not t.before_cut(0)  # nothing seen, nothing cut
    t.observe(2 * S)
    t.cut()
    assert t.before_cut(2 * S) and not t.before_cut(2 * S + 1) and t.epoch == 1
    t.observe(3 * S)
    assert t.before_cut(2 * S) and not t.before_cut(3 * S)


def test_stamps_beyond_a_jump_ahead_come_from_another_timeline():
    t = Timeline()
    assert not t.is_ahead(100 * S)  # no set yet: nothing to compare with
    t.observe(S)
    assert not t.is_ahead(S + JUMP_NS) and t.is_ahead(S + JUMP_NS + 1)


def test_jumps_back_is_the_rule_observe_applies_and_a_margin_makes_it_stricter():
    """The bridge decides with jumps_back (plus a margin) whether the nodes will see a new timeline: it must be
    exactly the rule Timeline.observe applies, never looser."""
    for back in (JUMP_NS - 1, JUMP_NS, JUMP_NS + 1):
        t = Timeline()
        t.observe(5 * S)
        assert jumps_back(5 * S, 5 * S - back) == t.observe(5 * S - back) == (back > JUMP_NS)
    margin = 50_000_000
    assert not jumps_back(5 * S, 5 * S - JUMP_NS - margin, margin)
    assert jumps_back(5 * S, 5 * S - JUMP_NS - margin - 1, margin)
    assert not jumps_back(5 * S, 6 * S)  # a later stamp never starts a new timeline
