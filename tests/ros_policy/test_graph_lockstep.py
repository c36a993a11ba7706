"""The whole R1 Lite graph (aggregator + planner + filler, tiny models) fed by a lock-step bag replay.

Golden regression: replaying the same bag twice through ONE running graph gives the identical command sequence (the
second replay starts a new timeline: every node resets its episode state), and that sequence is exactly what the
direct (no-ROS) loop computes from the same observation sets: one transform path, whatever runs it.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import yaml
from bag_fixtures import CAMERA_PERIOD_S, r1lite_bag_spec
from ros_helpers import Listener, collect_sets, wait_for, wp_bag, wp_launch
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from wp_policy.command_map import CommandMapper
from wp_policy.obs_sync import ObsSet
from wp_policy.paths import config_dir
from wp_policy.ros.conversions import duration_to_sec, image_msg_to_rgb, stamp_to_ns
from wp_policy.runtime import ReplanConfig, WaypointRunner
from wp_policy.safety import SafetyFilter

pytestmark = [pytest.mark.ros, pytest.mark.slow]

INSTRUCTION = "pick up the cup"
REPLAN = ReplanConfig("lookahead", plan_lead_s=0.5, fill_lead_s=0.15)
STEPS = 45  # 3 s bag, one observation set per camera period


@pytest.fixture(scope="module")
def bag(tmp_path_factory, r1lite_config):
    from wp_policy.ros.bag_synth import write_synthetic_bag

    path = tmp_path_factory.mktemp("bag") / "r1lite.mcap"
    write_synthetic_bag(path, r1lite_config, r1lite_bag_spec())
    return path


@pytest.fixture(scope="module")
def listener(rclpy_context, r1lite_config):
    node = Listener("lockstep_graph_listener")
    for topic in CommandMapper(r1lite_config).topics:
        node.listen(JointState, topic)
    for view in r1lite_config.camera_views:
        node.listen(Image, f"/wp/obs/{view}")
    node.listen(JointState, "/wp/obs/proprio")
    node.listen(JointTrajectory, "/wp/waypoints")
    node.listen(JointTrajectory, "/wp/action_chunk")
    yield node
    node.close()


@pytest.fixture(scope="module")
def graph(tmp_path_factory, policy_files, listener, r1lite_config):
    data = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    data["aggregator"]["ros__parameters"]["input_qos"] = "reliable"  # nothing may drop inside a lock-step burst
    data["planner"]["ros__parameters"].update(num_waypoints=3, cpu_threads=1)
    data["filler"]["ros__parameters"].update(command_qos="reliable", cpu_threads=1)
    params = tmp_path_factory.mktemp("params") / "lockstep.yaml"
    params.write_text(yaml.safe_dump(data))
    proc = wp_launch("r1lite", *policy_files.launch_args(), "device:=cpu", "use_sim_time:=true",
                     "clock_mode:=lockstep", *(f"{k}:={v}" for k, v in REPLAN.params().items()),
                     f"instruction:={INSTRUCTION}",
                     f"params_file:={params}")
    ack = CommandMapper(r1lite_config).topics[-1]
    wait_for(lambda: (listener.count_publishers(ack) > 0 and listener.count_publishers("/wp/waypoints") > 0)
             or proc.popen.poll() is not None, 120, "the planner and filler to come up")
    assert proc.popen.poll() is None, proc.output
    foreign = set(listener.get_node_names()) - {"aggregator", "planner", "filler", listener.get_name()}
    assert not foreign, f"other nodes share ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}: {sorted(foreign)}"
    yield proc
    assert proc.stop() == 0, proc.output


@pytest.fixture(scope="module")
def runs(graph, listener, bag, r1lite_config):
    """Two lock-step replays: per run, the commands of every topic, the waypoints, the chunks and the sets."""
    topics = CommandMapper(r1lite_config).topics
    out = []
    for _ in range(2):
        listener.clear()
        replay = wp_bag("replay", str(bag), "--lockstep", "--step", str(CAMERA_PERIOD_S), "--ack", topics[-1],
                        "--ack-timeout", "30")
        assert replay.wait(180) == 0, replay.output + graph.output
        assert f"{STEPS} lock-step steps, 0 ack timeouts" in replay.output, replay.output
        wait_for(lambda: all(len(listener.get(t)) >= STEPS for t in topics), 5, "the last commands")
        time.sleep(0.2)
        out.append({"commands": {t: listener.get(t) for t in topics}, "waypoints": listener.get("/wp/waypoints"),
                    "chunks": listener.get("/wp/action_chunk"),
                    "sets": collect_sets(listener, r1lite_config.camera_views)})
    return out


def command_rows(run, robot) -> tuple[list[int], np.ndarray]:
    """(stamps, joined actions [N, action_dim]) of one run's commands, tick by tick."""
    mapper = CommandMapper(robot)
    per_topic = run["commands"]
    stamps = [stamp_to_ns(m.header.stamp) for m in per_topic[mapper.topics[0]]]
    rows = [mapper.join({t: per_topic[t][i].position for t in mapper.topics}) for i in range(len(stamps))]
    return stamps, np.stack(rows)


def test_replaying_twice_gives_the_identical_command_sequence(runs, r1lite_config):
    first, second = runs
    for topic, msgs in first["commands"].items():
        again = second["commands"][topic]
        assert len(msgs) == len(again) == STEPS, topic  # exactly one command per observation set
        rows = [[(stamp_to_ns(m.header.stamp), list(m.position), list(m.velocity)) for m in run]
                for run in (msgs, again)]
        diff = next((i for i, (a, b) in enumerate(zip(*rows)) if a != b), None)
        assert diff is None, f"{topic}: tick {diff} differs: {rows[0][diff]} vs {rows[1][diff]}"
    set_stamps = [s for s, _ in first["sets"]]
    stamps, actions = command_rows(first, r1lite_config)
    assert stamps == set_stamps  # each command carries the stamp of the set it answers
    assert len({tuple(a) for a in actions}) > STEPS // 2  # the arms really move


def test_commands_are_within_limits_on_all_four_topics(runs, r1lite_config):
    lim = r1lite_config.limits
    _, actions = command_rows(runs[0], r1lite_config)
    assert np.all(actions >= np.array(lim.lower) - 1e-12) and np.all(actions <= np.array(lim.upper) + 1e-12)
    assert np.all(np.abs(np.diff(actions, axis=0)) <= np.array(lim.max_step) + 1e-9)
    for cmd in r1lite_config.ros.commands:
        for msg in runs[0]["commands"][cmd.topic]:
            assert list(msg.name) == [r1lite_config.action.names[d] for d in cmd.action_dims]
            assert list(msg.velocity) == list(cmd.max_velocity)  # arms: velocity limits; grippers: none


def test_waypoint_and_chunk_messages_are_well_formed(runs, r1lite_config):
    period = r1lite_config.control_period
    set_stamps = {s for s, _ in runs[0]["sets"]}
    waypoints = runs[0]["waypoints"]
    assert len(waypoints) >= 2  # the first plan and at least one early (lookahead) re-plan
    for msg in waypoints:
        assert list(msg.joint_names) == list(r1lite_config.proprio.names)
        assert stamp_to_ns(msg.header.stamp) in set_stamps  # planned from a set the graph saw
        ticks = np.array([duration_to_sec(p.time_from_start) for p in msg.points]) / period
        np.testing.assert_allclose(ticks, np.rint(ticks), atol=1e-6)  # whole control ticks
        assert np.all(np.diff(np.concatenate([[0], np.rint(ticks)])) >= 1)
        assert all(len(p.positions) == 14 and np.all(np.isfinite(p.positions)) for p in msg.points)
    for msg in runs[0]["chunks"]:
        assert list(msg.joint_names) == list(r1lite_config.action.names) and 1 <= len(msg.points) <= 32


def test_graph_commands_equal_the_direct_loop(runs, policy, r1lite_config):
    """The direct loop on the observation sets the graph saw: same plans, same fills, same safety filter."""
    sets = [ObsSet(stamp_ns=s, images={v: image_msg_to_rgb(parts[v]) for v in r1lite_config.camera_views},
                   proprio=np.asarray(parts["proprio"].position)) for s, parts in runs[0]["sets"]]
    fill = lambda o, s, e, d: policy.fill(o, INSTRUCTION, s, e, d)  # noqa: E731
    runner = WaypointRunner(fill, REPLAN.strategy(r1lite_config.control_hz))
    safety = SafetyFilter.from_robot(r1lite_config)
    expected = []
    for obs in sets:
        now = obs.stamp
        safety.observe_obs(now)
        safety.observe_feedback(obs.proprio, now)
        if runner.needs_plan:
            runner.request_plan()
            runner.load_plan(policy.plan(obs, INSTRUCTION))
        expected.append(safety.check(runner.step(obs), now).action)
        if runner.wants_early_plan:
            runner.request_plan()
            runner.load_plan(policy.plan(obs, INSTRUCTION))
    _, actions = command_rows(runs[0], r1lite_config)
    np.testing.assert_array_equal(actions, np.stack(expected))
