"""``wp-eval plot`` (wp_policy.sim.episode_plot): one episode's plans against its executed trajectory, from an
episode file, a results.json (wp-eval's and the LIBERO bridge's layouts) and a recorded bag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wp_policy.robot_config import load_robot_config
from wp_policy.ros.bag_io import BagWriter, msg_class, serialize
from wp_policy.sim.episode_plot import episode_figure, gripper_events, load_trace, trace_from_bag
from wp_policy.sim.eval_cli import main
from wp_policy.sim.recording import PlanRecord
from wp_policy.sim.rollout import EpisodeResult, step_stamp_ns

ROBOT = load_robot_config("libero")
WAIT = 2


def _episode(stop: bool = False) -> EpisodeResult:
    """12 steps: gripper open, closed from step 5, open again from step 9; plans at steps 0 and 6 (+ a stop at 12)."""
    rng = np.random.default_rng(0)
    steps = 12
    actions = np.zeros((steps, 7))
    actions[:, 6] = -1.0
    actions[5:9, 6] = 1.0
    proprio = np.cumsum(rng.normal(scale=0.01, size=(steps + 1, 8)), axis=0) + [0, 0, 1, 3.1, 0, 0, 0.04, -0.04]
    plans = [PlanRecord(0, proprio[[3, 6]] + 0.01, (3, 3)), PlanRecord(6, proprio[[9, 12]] - 0.01, (3, 3))]
    if stop:
        plans.append(PlanRecord(12, proprio[[12]], (0,)))
    return EpisodeResult("Lift", 0, 7, False, steps, "stopped" if stop else "max_steps", actions, (0.1,) * len(plans),
                         (0.01,) * 4, num_plans=len(plans), proprio=proprio, plans=tuple(plans))


def test_gripper_events_are_the_commanded_changes():
    steps = np.arange(6.0)
    model = np.array([[1.0], [1.0], [0.0], [0.0], [1.0], [1.0]])  # model space: 1 open, 0 closed
    assert gripper_events(steps, model) == [(2.0, "close"), (4.0, "open")]
    assert gripper_events(steps[:1], model[:1]) == []


def test_the_figure_has_one_axis_per_group_with_legends(tmp_path):
    result = _episode(stop=True)
    trace = load_trace(result.save(tmp_path / "Lift_t0.json"), ROBOT)
    assert gripper_events(trace.gripper_steps, trace.gripper) == [(5.0, "close"), (9.0, "open")]
    fig = episode_figure(trace, ROBOT)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["eef position (m)", "eef rotation (axis-angle, rad)",
                                                "gripper (finger qpos, m)"]
    assert axes[-1].get_xlabel() == "policy step (20 Hz)"
    assert "Lift t0: stopped after 12 steps, 3 plans" in fig._suptitle.get_text()
    for ax, group in zip(axes, ROBOT.proprio.plot_groups):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [*(ROBOT.proprio.names[d] for d in group.dims), "planned waypoints (one line per plan)",
                          "plan made", "stop planned (d = 0)", "gripper closes commanded",
                          "gripper opens commanded"]
        planned = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata()) == 3]
        assert len(planned) == 2 * len(group.dims)  # each non-stop plan: start + its 2 waypoints, per dim
        first = planned[0]
        assert list(first.get_xdata()) == [0, 3, 6]  # made at step 0, waypoints due 3 and 6 steps later
        np.testing.assert_allclose(first.get_ydata(), [result.proprio[0, group.dims[0]],
                                                       *result.plans[0].proprio[:, group.dims[0]]])
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_wp_eval_plot_writes_a_png_from_an_episode_file_or_a_results_json(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "episodes").mkdir(parents=True)
    result = _episode()
    result.save(out / "episodes" / "Lift_t0.json")
    record = {k: v for k, v in result.to_json().items() if k not in ("actions", "proprio", "plans")}
    (out / "results.json").write_text(json.dumps({"episodes": [record]}))  # wp-eval's: arrays in episode files
    assert main(["plot", str(out / "episodes" / "Lift_t0.json")]) == 0
    assert (out / "episodes" / "Lift_t0.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(out / "results.json"), "--episode", "0", "-o", str(tmp_path / "a.png")]) == 0
    bridge = tmp_path / "bridge" / "results.json"  # the bridge's (make demo): every record holds its arrays
    bridge.parent.mkdir()
    bridge.write_text(json.dumps({"episodes": [result.to_json() | {"bridge": {"holds": {}}}]}))
    assert main(["plot", str(bridge), "--episode", "Lift_t0"]) == 0
    assert (tmp_path / "bridge" / "plots" / "Lift_t0.png").stat().st_size > 10_000
    capsys.readouterr()

    for args, message in (([str(out / "results.json")], "holds 1 episodes; pick one with --episode (a key: Lift_t0"),
                          ([str(out / "results.json"), "--episode", "Lift_t9"], "no episode 'Lift_t9'"),
                          ([str(tmp_path / "nope.json")], "nope.json not found")):
        assert main(["plot", *args]) == 2
        assert message in capsys.readouterr().err
    old = result.to_json()
    del old["proprio"], old["plans"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["plot", str(tmp_path / "old.json")]) == 2
    assert "recorded before proprio was saved per step cannot be plotted" in capsys.readouterr().err


def _header(stamp_ns: int):
    return msg_class("std_msgs/msg/Header")(
        stamp=msg_class("builtin_interfaces/msg/Time")(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="")


def _joint_state(names, position, stamp_ns: int):
    return msg_class("sensor_msgs/msg/JointState")(header=_header(stamp_ns), name=list(names),
                                                   position=np.asarray(position, np.float64), velocity=np.zeros(0),
                                                   effort=np.zeros(0))


def _trajectory(plan: PlanRecord, stamp_ns: int):
    """A plan as the planner publishes it (a stop: one point due at once, no names)."""
    point = msg_class("trajectory_msgs/msg/JointTrajectoryPoint")
    duration = msg_class("builtin_interfaces/msg/Duration")
    names, ticks = (list(ROBOT.proprio.names), np.cumsum(plan.durations)) if not plan.is_stop else ([], [0])
    rows = plan.proprio if not plan.is_stop else np.zeros((1, 0))
    points = [point(positions=np.asarray(r, np.float64), velocities=np.zeros(0), accelerations=np.zeros(0),
                    effort=np.zeros(0), time_from_start=duration(sec=int(t) // 20, nanosec=int(t) % 20 * 50_000_000))
              for r, t in zip(rows, ticks)]
    return msg_class("trajectory_msgs/msg/JointTrajectory")(header=_header(stamp_ns), joint_names=names, points=points)


def test_a_recorded_bag_gives_the_same_trace(tmp_path):
    """Proprio, plans and commands as the graph publishes them (stamps = step_stamp_ns), written to an MCAP."""
    from wp_policy.ros.topics import PROPRIO_TOPIC, WAYPOINTS_TOPIC

    result = _episode(stop=True)
    stamp = [step_stamp_ns(WAIT + k, ROBOT.control_hz) for k in range(len(result.proprio))]
    js, traj = "sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory"
    events = [(stamp[k], PROPRIO_TOPIC, js, _joint_state(ROBOT.proprio.names, p, stamp[k]))
              for k, p in enumerate(result.proprio)]
    events += [(stamp[k] + 1, "/libero/action", js, _joint_state(ROBOT.action.names, a, stamp[k]))
               for k, a in enumerate(result.actions)]
    events += [(stamp[p.step], WAYPOINTS_TOPIC, traj, _trajectory(p, stamp[p.step])) for p in result.plans]
    events.sort(key=lambda e: e[0])
    path = tmp_path / "run.mcap"
    with BagWriter(path) as writer:
        for topic, msgtype in sorted({(e[1], e[2]) for e in events}):
            writer.add_topic(topic, msgtype)
        for log, topic, msgtype, msg in events:
            writer.write(topic, log, serialize(msg, msgtype))

    trace = trace_from_bag(path, ROBOT)
    np.testing.assert_allclose(trace.steps, np.arange(len(result.proprio)), atol=1e-6)
    np.testing.assert_array_equal(trace.proprio, result.proprio)
    assert [(p.step, p.durations) for p in trace.plans] == [(p.step, p.durations) for p in result.plans[:2]] + \
        [(12, ())]  # an operator-style stop: no waypoints
    np.testing.assert_allclose(trace.plans[1].proprio, result.plans[1].proprio)
    assert gripper_events(trace.gripper_steps, trace.gripper) == [(5.0, "close"), (9.0, "open")]
    assert main(["plot", str(path)]) == 0 and (tmp_path / "run.png").is_file()


def test_a_bag_without_the_topics_is_refused(tmp_path):
    path = tmp_path / "other.mcap"
    with BagWriter(path) as writer:
        writer.add_topic("/wp/instruction", "std_msgs/msg/String")
        writer.write("/wp/instruction", 1, serialize(msg_class("std_msgs/msg/String")(data="x"), "std_msgs/msg/String"))
    with pytest.raises(ValueError, match=r"has no \['/wp/obs/proprio', '/wp/waypoints'\]; record them"):
        trace_from_bag(Path(path), ROBOT)
