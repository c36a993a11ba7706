import numpy as np
import pytest

from wp_policy.obs_sync import (
    PROPRIO_PART,
    InvalidInput,
    ObsSynchronizer,
    StampedSetCollector,
    feedback_layout,
    feedback_values,
)
from wp_policy.robot_config import FeedbackConfig

MS = 1_000_000
IMG = np.zeros((4, 4, 3), dtype=np.uint8)


@pytest.fixture
def sync(r1lite_config):
    return ObsSynchronizer.from_robot(r1lite_config, tolerance=0.02, timeout=0.5)


def feed_all(sync, cfg, stamp_ns, received, value=0.0):
    for fb in cfg.ros.feedback:
        sync.add_feedback(fb.topic, stamp_ns, [value + d for d in fb.proprio_dims], received)


def feed_views(sync, cfg, stamp_ns, received, offsets_ms=(0, 3, 6)):
    out = None
    for view, off in zip(cfg.camera_views, offsets_ms):
        sync.add_image(view, stamp_ns + off * MS, IMG, received)
        out = sync.try_assemble(received)
    return out


def test_one_set_per_frame_group_with_newest_view_stamp(sync, r1lite_config):
    cfg = r1lite_config
    for k in range(12):  # feedback at 100 Hz over 110 ms, value encodes the time
        feed_all(sync, cfg, k * 10 * MS, 0.0, value=k * 10.0)
    views = list(cfg.camera_views)
    sync.add_image(views[0], 40 * MS, IMG, 0.0)
    assert sync.try_assemble(0.0) is None  # other views missing
    sync.add_image(views[1], 43 * MS, IMG, 0.0)
    sync.add_image(views[2], 46 * MS, IMG, 0.0)
    obs = sync.try_assemble(0.01)
    assert obs.stamp_ns == 46 * MS and set(obs.images) == set(views)
    # proprio is the feedback sample nearest 46 ms (the one at 50 ms): dims carry value 50 + dim
    np.testing.assert_array_equal(obs.proprio, 50.0 + np.arange(14))
    assert sync.try_assemble(0.01) is None  # same frames: no second set
    sync.add_image(views[0], 106 * MS, IMG, 0.05)
    assert sync.try_assemble(0.05) is None  # only one view is new


def test_views_out_of_tolerance_give_no_set(sync, r1lite_config):
    feed_all(sync, r1lite_config, 40 * MS, 0.0)
    assert feed_views(sync, r1lite_config, 0, 0.0, offsets_ms=(0, 30, 0)) is None


def test_set_waits_for_feedback_at_or_after_its_stamp(sync, r1lite_config):
    cfg = r1lite_config
    feed_all(sync, cfg, 0, 0.0, value=0.0)
    assert feed_views(sync, cfg, 0, 0.0) is None  # set stamp 6 ms, newest feedback 0 ms: the nearest may be ahead
    for fb in cfg.ros.feedback[:-1]:
        sync.add_feedback(fb.topic, 10 * MS, [10.0 + d for d in fb.proprio_dims], 0.01)
    assert sync.try_assemble(0.01) is None  # one topic still behind
    last = cfg.ros.feedback[-1]
    sync.add_feedback(last.topic, 10 * MS, [10.0 + d for d in last.proprio_dims], 0.01)
    obs = sync.try_assemble(0.01)
    assert obs.stamp_ns == 6 * MS and obs.received == 0.0
    np.testing.assert_array_equal(obs.proprio, 10.0 + np.arange(14))  # 10 ms is nearer to 6 ms than 0 ms


def test_stale_and_missing_inputs_are_reported(sync, r1lite_config):
    cfg = r1lite_config
    status = sync.status(0.0)
    assert not status.ok and len(status.missing) == 7
    feed_all(sync, cfg, 10 * MS, 0.0)
    assert feed_views(sync, cfg, 0, 0.0) is not None
    head = cfg.camera_views[0]
    # head stops; others (and feedback) keep arriving
    feed_all(sync, cfg, 600 * MS, 0.6)
    for view in cfg.camera_views[1:]:
        sync.add_image(view, 600 * MS, IMG, 0.6)
    assert sync.try_assemble(0.6) is None
    status = sync.status(0.6)
    assert status.stale == (head,) and "stale: head (0.60 s)" in status.message()


def test_malformed_feedback_is_rejected(sync, r1lite_config):
    arm = r1lite_config.ros.feedback[0].topic
    with pytest.raises(InvalidInput, match="3 positions, need at least 6"):
        sync.add_feedback(arm, 0, [0.0, 0.0, 0.0], 0.0)
    with pytest.raises(InvalidInput, match="non-finite"):
        sync.add_feedback(arm, 0, [0.0, np.nan, 0, 0, 0, 0], 0.0)
    with pytest.raises(InvalidInput, match="unknown feedback topic"):
        sync.add_feedback("/nope", 0, [0.0], 0.0)
    with pytest.raises(InvalidInput, match="unknown view"):
        sync.add_image("nope", 0, IMG, 0.0)
    sync.add_feedback(arm, 0, [0.0] * 7, 0.0)  # the driver may append the gripper: extra values are fine


def test_backward_jump_restarts_the_timeline(sync, r1lite_config):
    cfg = r1lite_config
    feed_all(sync, cfg, 10_010 * MS, 0.0)
    assert feed_views(sync, cfg, 10_000 * MS, 0.0) is not None
    feed_all(sync, cfg, 10 * MS, 0.1)  # the bag starts again
    obs = feed_views(sync, cfg, 0, 0.1)
    assert obs is not None and obs.stamp_ns == 6 * MS and sync.time_jumps == 1


def test_bad_configuration_is_rejected(r1lite_config):
    with pytest.raises(ValueError, match="must be positive"):
        ObsSynchronizer.from_robot(r1lite_config, tolerance=0.0, timeout=1.0)
    with pytest.raises(ValueError, match="fill every proprio dim"):
        ObsSynchronizer(["a"], r1lite_config.ros.feedback[:2], 14, 0.1, 1.0)


def test_collector_assembles_parts_in_any_order():
    c = StampedSetCollector(["head", "wrist", PROPRIO_PART], max_pending=2)
    assert c.add("wrist", 5, "w5") is None
    assert c.add(PROPRIO_PART, 5, "p5") is None
    assert c.add("head", 5, "h5") == (5, {"wrist": "w5", PROPRIO_PART: "p5", "head": "h5"})
    assert c.add("head", 5, "again") is None  # already delivered
    for t in (6, 7, 8):  # incomplete sets are evicted beyond max_pending
        c.add("head", t, t)
    assert c.dropped == 1
    with pytest.raises(InvalidInput):
        c.add("elbow", 9, None)


def test_feedback_is_read_by_joint_name_whatever_the_driver_order():
    fb = FeedbackConfig("/arm/joint_states", proprio_dims=(2, 0, 1), joint_names=("j3", "j1", "j2"))
    # a driver listing its joints in its own order, with an extra joint the robot config does not use
    values = feedback_values(fb, [0.2, 0.9, 0.1, 0.3], ["j2", "wheel", "j1", "j3"])
    assert values.tolist() == [0.3, 0.1, 0.2]  # proprio_dims order: j3 (dim 2), j1 (dim 0), j2 (dim 1)
    assert feedback_values(fb, [0.1, 0.2, 0.3]).tolist() == [0.1, 0.2, 0.3]  # no names: by position (0, 1, 2)
    with pytest.raises(InvalidInput, match=r"/arm/joint_states: no joint\(s\) \['j3'\] in the message "
                                           r"\(it has \['j1', 'j2', 'elbow'\]\)"):
        feedback_values(fb, [0.0, 0.0, 0.0], ["j1", "j2", "elbow"])
    assert feedback_values(fb, [0.2, np.nan, 0.1, 0.3], ["j2", "wheel", "j1", "j3"]).tolist() == [0.3, 0.1, 0.2]
    with pytest.raises(InvalidInput, match="non-finite"):  # only the robot's own joints must be finite
        feedback_values(fb, [0.2, 0.9, np.nan, 0.3], ["j2", "wheel", "j1", "j3"])


def test_feedback_layout_is_what_feedback_values_reads(r1lite_config):
    proprio = np.arange(14.0)
    fb = FeedbackConfig("/fb", proprio_dims=(3, 5), joint_names=("a", "b"), source_indices=(2, 0))
    names, position = feedback_layout(fb, proprio)
    assert (names, position.tolist()) == (["b", "", "a"], [5.0, 0.0, 3.0])
    assert feedback_values(fb, position, names).tolist() == feedback_values(fb, position).tolist() == [3.0, 5.0]
    for fb in r1lite_config.ros.feedback:  # default joint names: the proprio names of the dims
        names, position = feedback_layout(fb, proprio)
        assert names == [r1lite_config.proprio.names[d] for d in fb.proprio_dims]
        assert feedback_values(fb, position[::-1], names[::-1]).tolist() == proprio[list(fb.proprio_dims)].tolist()


def test_synchronizer_takes_reordered_named_feedback(sync, r1lite_config):
    cfg = r1lite_config
    for fb in cfg.ros.feedback:
        names, position = feedback_layout(fb, np.arange(14.0))
        sync.add_feedback(fb.topic, 10 * MS, position[::-1], 0.0, names[::-1])
    obs = feed_views(sync, cfg, 0, 0.0)
    np.testing.assert_array_equal(obs.proprio, np.arange(14.0))
    arm = cfg.ros.feedback[0]
    with pytest.raises(InvalidInput, match=r"no joint\(s\) \['left_arm_joint1', "):
        sync.add_feedback(arm.topic, 20 * MS, [0.0] * 6, 0.0, ["j1", "j2", "j3", "j4", "j5", "j6"])
