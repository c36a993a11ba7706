"""The stop latch state machine and its /wp/stop_state encoding (ROS-free)."""

from __future__ import annotations

import pytest

from wp_policy.runtime.stop_latch import LatchState, StopLatch, message_identity


def test_only_a_resume_or_a_new_instruction_releases_a_stop():
    clock = iter(range(100)).__next__
    latch = StopLatch(clock=lambda: float(clock()))
    assert not latch.engaged and latch.state.source == "startup"
    assert latch.engage("stop_message", "gid/1") and latch.engaged
    assert not latch.engage("model_stop", "gid/1")  # already stopped: the first cause is kept
    assert latch.state.source == "stop_message"
    assert latch.release("resume_service", "gid/1") and not latch.engaged
    assert not latch.release("instruction", "gid/2")  # nothing to release
    assert latch.changes == 2


def test_an_instruction_delivered_again_is_not_new():
    latch = StopLatch()
    first = message_identity(b"\x01\x02", 7, 123)
    assert latch.new_instruction(first)
    assert not latch.new_instruction(first)  # a latched sample re-delivered to a late-matching subscription
    assert latch.new_instruction(message_identity(b"\x01\x02", 8, 123))  # the same publisher's next message
    assert message_identity(None, None, 55) == "t/55"


def test_the_state_round_trips_through_json_and_bad_payloads_are_named():
    state = LatchState(True, "model_stop", 12.5, "ab/3", "d = 0")
    assert LatchState.from_json(state.to_json()) == state
    assert "stopped by model_stop" in state.describe()
    with pytest.raises(ValueError, match="malformed stop state"):
        LatchState.from_json('{"stopped": true}')
    with pytest.raises(ValueError, match="source must be one of"):
        LatchState(True, "cosmic_ray", 0.0, "")


def test_a_stop_sent_before_the_last_release_is_answered_by_it():
    running = LatchState(stopped=False, source="resume_service", since=100.0, instruction_id="i")
    assert running.released_after(99.9)  # a late copy of the stop the resume released
    assert not running.released_after(100.1)  # a stop sent after the resume is a new one
    assert not running.released_after(0.0)  # an unset stamp always stops
    stopped = LatchState(stopped=True, source="stop_topic", since=100.0, instruction_id="i")
    assert not stopped.released_after(99.9)
