"""The LIBERO bridge: the simulated ROS graph (``wp-launch libero_sim``, one process per node, lock-step) executes
exactly the actions the direct loop (``wp_policy.sim.rollout.run_episode``) executes, episode by episode; plus the
bridge alone against a stand-in filler (bad commands, the filler's stop, wall-clock mode, exit codes) and the
planner's answer to a repeated request (which the episode starts rely on).

Parity is exact (bit for bit, float64), not "to float32 round-off": both paths feed the same models identical
inputs (the aggregator and the direct loop resize the same raw frames with the same ``resize_with_pad``; the float32
sim state becomes float64 exactly; the stamps, hence the AE noise seeds, are ``step_stamp_ns``), torch runs
single-threaded on both sides (same reduction order), commands travel as float64 in ``JointState.position``, and
the SafetyFilter's clamp leaves in-range actions untouched. Any difference is a real divergence.

Episodes are 15 steps long; plans have two waypoints of which only the first runs (``pairs_per_plan:=1``, which
both paths must apply alike; the tiny planner's d = 9): each episode re-plans once, and being shorter than 1 s of
sim time, the second episode also needs the bridge's timeline separator. Both replan modes are checked: in
``lookahead`` the same ReplanConfig (leads in seconds) reaches the filler as launch arguments and the direct loop as
its config, and the next plan is requested while a pair runs and spliced onto the queue. The same check runs on one
real LIBERO task (libero_object task 0, init state 0, 64 px, 3 wait + 12 policy steps) where LIBERO and its assets
are installed.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import PYTHON, Listener, Proc, diagnostics_of, wait_for, wp_launch
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory

from wp_policy.paths import config_dir
from wp_policy.ros.conversions import make_joint_state, ns_to_stamp, rgb_to_image_msg, stamp_to_ns
from wp_policy.ros.diagnostics import status_values
from wp_policy.ros.libero_bridge_node import RESULT_TOPIC, BridgeConfig, plan_episodes
from wp_policy.ros.qos import qos_profile
from wp_policy.runtime import ReplanConfig
from wp_policy.runtime.stop_latch import LatchState
from wp_policy.sim.libero_env import libero_missing

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

ENV, IMAGE, TRIALS, SEED, STEPS = "robosuite:Lift", 64, 2, 7, 15
NUM_WAYPOINTS, PAIRS_PER_PLAN, FLOW_STEPS = 2, 1, 2
HOLD = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # LIBERO hold: no motion, gripper open (no gripper command yet)
AFTER_LAST = ReplanConfig("after_last", pairs_per_plan=PAIRS_PER_PLAN)
LOOKAHEAD = ReplanConfig("lookahead", pairs_per_plan=PAIRS_PER_PLAN)  # leads: the defaults wp-eval uses too


@pytest.fixture(scope="module")
def files(tmp_path_factory, libero_config, sp_model_path):
    from policy_files import sim_stats, write_tiny_policy

    out = tmp_path_factory.mktemp("libero_policy")
    files = write_tiny_policy(out, libero_config, sp_model_path, stats=sim_stats(libero_config))
    return files, files.policy_yaml(out / "policy.yaml", "libero", num_waypoints=NUM_WAYPOINTS,
                                    num_flow_steps=FLOW_STEPS)


@pytest.fixture(scope="module")
def specs():
    """The bridge's episode list for these arguments (wp-eval's: stand-in trial t resets with SEED + t)."""
    _, specs = plan_episodes(BridgeConfig(env=ENV, trials=TRIALS, seed=SEED, max_steps=STEPS, image_size=IMAGE))
    assert [(s.trial, s.seed, s.max_steps) for s in specs] == [(t, SEED + t, STEPS) for t in range(TRIALS)]
    return specs


def test_bridge_records_the_replan_config_it_is_given():
    config, _ = plan_episodes(BridgeConfig(env=ENV, image_size=IMAGE, replan=LOOKAHEAD))
    assert config.replan == LOOKAHEAD  # the EvalConfig its results are summarised with


def test_bridge_config_refuses_a_bad_video_size():
    with pytest.raises(ValueError, match=r"video_size must be an even number of pixels in 64\.\.2048, got 65"):
        BridgeConfig(env=ENV, video_size=65)


def test_bridge_config_refuses_the_old_image_size_sentinel():
    """image_size 0 once meant the LIBERO protocol's 256: an old params file gets an error naming the value to write."""
    with pytest.raises(ValueError, match=r"image_size 0 no longer means the LIBERO protocol's size: write 256"):
        BridgeConfig(env=ENV, image_size=0)
    assert BridgeConfig(env=ENV).image_size == 256


def run_graph(tmp: Path, files, env: str, trials: int, steps: int, replan: ReplanConfig = AFTER_LAST,
              **bridge_params):
    """One ``wp-launch libero_sim`` run: (exit code, output, results.json, episode summaries)."""
    policy_files, _ = files
    data = yaml.safe_load((config_dir() / "graphs" / "libero_sim.yaml").read_text())
    data["libero_bridge"]["ros__parameters"].update(image_size=IMAGE, settle_s=0.5, **bridge_params)
    data["planner"]["ros__parameters"].update(num_waypoints=NUM_WAYPOINTS, cpu_threads=1)
    data["filler"]["ros__parameters"].update(num_flow_steps=FLOW_STEPS, cpu_threads=1)
    (tmp / "params.yaml").write_text(yaml.safe_dump(data))
    listener = Listener("libero_parity_listener")
    listener.listen(String, RESULT_TOPIC)
    try:
        proc = wp_launch("libero_sim", *policy_files.launch_args(), f"env:={env}", f"trials:={trials}",
                         f"seed:={SEED}", f"max_steps:={steps}",
                         *(f"{name}:={value}" for name, value in replan.params().items()),
                         f"output_dir:={tmp / 'out'}",
                         f"params_file:={tmp / 'params.yaml'}")
        try:
            code = proc.wait(400)
        finally:
            proc.stop()
        if code == 0:
            wait_for(lambda: len(listener.get(RESULT_TOPIC)) >= trials, 5, "the episode summaries")
        summaries = [json.loads(m.data) for m in listener.get(RESULT_TOPIC)]
    finally:
        listener.close()
    results = json.loads((tmp / "out" / "results.json").read_text()) if code == 0 else None
    return code, proc.output, results, summaries


def run_direct(files, env: str, specs, replan: ReplanConfig = AFTER_LAST):
    """The same episodes through run_episode, rendered in a spawned child (no TensorFlow next to MuJoCo)."""
    from sim_direct import direct_rollouts

    _, policy_yaml = files
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        job = pool.submit(direct_rollouts, str(policy_yaml), env, IMAGE, [asdict(s) for s in specs], replan.params())
        return job.result(timeout=300)


def assert_identical_episodes(graph, direct, specs, steps: int, replan: ReplanConfig = AFTER_LAST) -> None:
    code, output, results, _ = graph
    assert code == 0, output
    for spec, ros, ref in zip(specs, results["episodes"], direct, strict=True):
        assert (ros["task"], ros["trial"], ros["seed"], ros["init_state"]) == \
            (ref["task"], ref["trial"], ref["seed"], ref["init_state"]) == \
            (spec.task, spec.trial, spec.seed, spec.init_state)
        assert ros["bridge"]["holds"] == {}, ros["bridge"]  # every step ran a model action, nothing was replaced
        actions, expected = np.asarray(ros["actions"]), np.asarray(ref["actions"])
        assert actions.shape == expected.shape == (steps, 7)
        np.testing.assert_array_equal(actions, expected)
        assert (ros["success"], ros["termination"], ros["steps"]) == \
            (ref["success"], ref["termination"], ref["steps"])
        assert all(ros[k] == ref[k] == v for k, v in replan.params().items())
        # the bridge recorded what wp-eval plot draws exactly as the direct loop did: each plan at its step
        assert ros["num_plans"] == ref["num_plans"] and ros["plans"] == ref["plans"]
        if replan.mode == "after_last":  # re-planned once, after the first waypoint (d = 9) was reached
            assert [p["step"] for p in ros["plans"]] == [0, 9]
        else:  # asked for the next plan on the tick after the first (the only kept pair runs from step 0)
            assert [p["step"] for p in ros["plans"]][:2] == [0, 1]
        np.testing.assert_array_equal(np.asarray(ros["proprio"]), np.asarray(ref["proprio"]))
    first = np.asarray(results["episodes"][0]["actions"])
    assert len({tuple(a) for a in first}) > steps // 2  # the arm really moves


@pytest.fixture(scope="module")
def graph(tmp_path_factory, files, rclpy_context):
    """One ``wp-launch libero_sim`` run of both stand-in episodes."""
    return run_graph(tmp_path_factory.mktemp("graph"), files, ENV, TRIALS, STEPS)


@pytest.fixture(scope="module")
def direct(files, specs):
    return run_direct(files, ENV, specs)


def test_graph_run_ends_cleanly_with_exit_0(graph):
    code, output, results, summaries = graph
    assert code == 0, output
    assert "node 'libero_bridge' finished (exit code 0); stopping the graph" in output
    assert results["overall"]["episodes"] == TRIALS and len(results["episodes"]) == TRIALS
    assert [(s["trial"], s["index"], s["of"]) for s in summaries] == [(t, t, TRIALS) for t in range(TRIALS)]
    assert "[libero_bridge] overall" in output  # the printed table
    import imageio.v2 as imageio

    from wp_policy.sim.recording import END_HOLD_FRAMES, VIDEO_SIZE, frame_shape

    for episode in results["episodes"]:  # both views side by side at the default video size, final frame held
        with imageio.get_reader(episode["video"], format="FFMPEG") as reader:
            frames = np.stack(list(reader.iter_data()))
        assert frames.shape == (episode["steps"] + END_HOLD_FRAMES, *frame_shape(VIDEO_SIZE), 3)


def test_graph_and_direct_loop_execute_identical_actions(graph, direct, specs):
    assert_identical_episodes(graph, direct, specs, STEPS)


def test_graph_and_direct_loop_execute_identical_actions_in_lookahead(tmp_path, files, specs, rclpy_context):
    graph = run_graph(tmp_path, files, ENV, TRIALS, STEPS, replan=LOOKAHEAD)
    assert_identical_episodes(graph, run_direct(files, ENV, specs, LOOKAHEAD), specs, STEPS, LOOKAHEAD)


LIBERO_ENV, LIBERO_STEPS, LIBERO_WAIT_STEPS = "libero:libero_object", 12, 3


@pytest.mark.skipif(bool(libero_missing()), reason=libero_missing())
def test_graph_equals_direct_on_real_libero(tmp_path, files, rclpy_context):
    """One real LIBERO episode (libero_object task 0 from init state 0) through the graph and the direct loop.
    The direct run comes second: one LIBERO process (2-3 GB) at a time."""
    cfg = BridgeConfig(env=LIBERO_ENV, trials=1, seed=SEED, max_steps=LIBERO_STEPS, image_size=IMAGE,
                       num_wait_steps=LIBERO_WAIT_STEPS)
    _, specs = plan_episodes(cfg)
    assert [(s.task, s.init_state, s.seed, s.max_steps, s.num_wait_steps) for s in specs] == \
        [("pick_up_the_alphabet_soup_and_place_it_in_the_basket", 0, None, LIBERO_STEPS, LIBERO_WAIT_STEPS)]
    graph = run_graph(tmp_path, files, LIBERO_ENV, 1, LIBERO_STEPS, num_wait_steps=LIBERO_WAIT_STEPS)
    assert graph[0] == 0, graph[1]
    video = Path(graph[2]["episodes"][0]["video"])
    assert video.is_file() and video.name == f"rollout_{specs[0].task}_t0_failure.mp4"
    assert_identical_episodes(graph, run_direct(files, LIBERO_ENV, specs), specs, LIBERO_STEPS)


# ---- the bridge on its own: a stand-in filler sends bad commands ------------------------------------------------
class FakeFiller(Listener):
    """Answers each observation with a command: NaNs, then a wrong-size one, then a fixed valid action; answer
    ``stop_at`` is the filler's stop (a hold tagged ``hold:stopped``)."""

    GOOD = [0.25, -0.5, 0.0, 0.0, 0.0, 0.125, 1.0]
    stop_at = 7

    def __init__(self, answer: bool = True):
        super().__init__("fake_filler")
        self.answered = 0
        self.pub = self.create_publisher(JointState, "/libero/action", qos_profile("reliable"))
        for topic in ("/libero/agentview/image_raw", "/libero/wrist/image_raw"):
            self.listen(Image, topic, depth=5)  # the bridge waits for subscribers on its outputs
        self.create_subscription(JointState, "/libero/joint_states", self._answer if answer else lambda _: None,
                                 qos_profile("reliable"))

    def _answer(self, msg: JointState) -> None:
        position = [[float("nan")] * 7, [0.1, 0.2]][self.answered] if self.answered < 2 else self.GOOD
        command = make_joint_state([], HOLD if self.answered == self.stop_at else position,
                                   stamp_to_ns(msg.header.stamp))
        command.header.frame_id = "hold:stopped" if self.answered == self.stop_at else ""
        self.answered += 1
        self.pub.publish(command)


def run_bridge(tmp: Path, **params) -> Proc:
    """The bridge node alone (robosuite Lift, 64 px), parameters from a YAML (empty strings need one)."""
    values = {"env": ENV, "image_size": IMAGE, "use_sim_time": True, "ready_publishers": "", "settle_s": 0.3,
              "num_wait_steps": 2, "output_dir": str(tmp / "out"), "record_video": False, **params}
    (tmp / "bridge.yaml").write_text(yaml.safe_dump({"libero_bridge": {"ros__parameters": values}}))
    return Proc([PYTHON, "-m", "wp_policy.ros.libero_bridge_node", "--ros-args", "--params-file",
                 str(tmp / "bridge.yaml")])


def test_bad_commands_become_holds_and_a_stop_ends_the_episode(tmp_path, rclpy_context):
    filler = FakeFiller()
    filler.listen(String, RESULT_TOPIC)
    filler.listen(DiagnosticArray, "/diagnostics")
    try:
        proc = run_bridge(tmp_path, max_steps=4, trials=2, startup_timeout_s=60.0)
        try:
            assert proc.wait(120) == 0, proc.output
        finally:
            proc.stop()
        diags = diagnostics_of(filler, "/libero_bridge")
    finally:
        filler.close()
    assert "rejected command: rejected_non_finite" in proc.output
    episodes = json.loads((tmp_path / "out" / "results.json").read_text())["episodes"]
    first = np.asarray(episodes[0]["actions"])
    np.testing.assert_array_equal(first, [HOLD, HOLD, FakeFiller.GOOD, FakeFiller.GOOD])
    assert episodes[0]["bridge"]["holds"] == {"bridge.rejected_non_finite": 1, "bridge.rejected_length": 1}
    assert episodes[0]["termination"] == "max_steps"
    # episode 2 restarted sim time < 1 s back: the separator observation was answered too (answer 4, discarded);
    # its third command (answer 7) is the filler's stop: the episode ends there, that hold is not executed
    assert filler.answered == 4 + 1 + 3
    np.testing.assert_array_equal(episodes[1]["actions"], [FakeFiller.GOOD] * 2)
    assert (episodes[1]["termination"], episodes[1]["steps"], episodes[1]["success"]) == ("stopped", 2, False)
    values = status_values(diags[-1])
    assert values["count.rejected_commands"] == "2" and values["count.episodes"] == "2"
    assert values["count.timeline_separators"] == "1"


def test_wall_clock_mode_applies_the_newest_command_each_tick(tmp_path, rclpy_context):
    filler = FakeFiller()
    filler.answered = 2  # valid commands only
    proc = run_bridge(tmp_path, clock_mode="wall", use_sim_time=False, max_steps=6, startup_timeout_s=60.0)
    try:
        assert proc.wait(120) == 0, proc.output
    finally:
        proc.stop()
        filler.close()
    (episode,) = json.loads((tmp_path / "out" / "results.json").read_text())["episodes"]
    actions = np.asarray(episode["actions"])
    assert actions.shape == (6, 7) and filler.answered >= 2 + 5
    assert all(list(a) in (HOLD, FakeFiller.GOOD) for a in actions)  # a hold only before the first command
    np.testing.assert_array_equal(actions[-3:], [FakeFiller.GOOD] * 3)
    assert set(episode["bridge"]["holds"]) <= {"no_command"} and episode["bridge"]["command_age_s"]["max"] < 5
    proc = run_bridge(tmp_path, clock_mode="wall", use_sim_time=True)
    assert proc.wait(60) == 1 and "clock_mode wall needs use_sim_time:=false" in proc.output


def test_exit_codes_name_the_problem(tmp_path, rclpy_context, monkeypatch):
    proc = run_bridge(tmp_path, env="robosuite:Nope")
    assert proc.wait(60) == 1
    assert "cannot start" in proc.output and "unknown robosuite target(s) ['Nope']" in proc.output
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path / "no_libero"))  # a machine without LIBERO's config
    proc = run_bridge(tmp_path, env="libero:libero_object")
    assert proc.wait(60) == 1
    assert "cannot start" in proc.output and "make setup" in proc.output
    filler = FakeFiller(answer=False)  # up, but never answers
    proc = run_bridge(tmp_path, max_steps=3, command_timeout_s=2.0, startup_timeout_s=60.0)
    try:
        assert proc.wait(120) == 1, proc.output
    finally:
        proc.stop()
        filler.close()
    assert "no command on /libero/action for Lift trial 0 step 0" in proc.output
    launch = wp_launch("libero_sim", "--nodes", "libero_bridge", "env:=robosuite:Nope")
    assert launch.wait(60) == 1
    assert "node 'libero_bridge'" in launch.output and "exited with code 1" in launch.output


def test_planner_answers_a_repeated_request_with_the_same_plan(files, libero_config, rclpy_context):
    """At an episode start the planner's instruction-triggered plan can reach the filler before the set it was made
    from (the filler drops it); the filler's request for that set must then get the same plan again, not silence.
    Here: a request, its plan, the same request again -> the same plan again (``count.republished``)."""
    policy_files, _ = files
    node = Listener("planner_probe")
    node.listen(JointTrajectory, "/wp/waypoints")
    node.listen(DiagnosticArray, "/diagnostics")
    reliable = qos_profile("reliable")
    pubs = {v: node.create_publisher(Image, f"/wp/obs/{v}", reliable) for v in libero_config.camera_views}
    proprio_pub = node.create_publisher(JointState, "/wp/obs/proprio", reliable)
    replan_pub = node.create_publisher(Header, "/wp/replan", reliable)
    latch_pub = node.create_publisher(String, "/wp/stop_state", qos_profile("reliable_latched"))
    latch_pub.publish(String(data=LatchState(False, "startup", time.time(), "").to_json()))  # as a filler would
    proc = Proc([PYTHON, "-m", "wp_policy.ros.planner_node", "--ros-args", "-p", "robot_config:=libero",
                 "-p", f"checkpoint:={policy_files.vlm}", "-p", f"stats:={policy_files.stats}",
                 "-p", f"tokenizer:={policy_files.tokenizer}", "-p", "instruction:=pick up the red cube",
                 "-p", "num_waypoints:=1", "-p", "cpu_threads:=1", "-p", "diagnostics_period:=0.2"])
    try:
        wait_for(lambda: node.count_subscribers("/wp/replan") > 0 and node.count_subscribers("/wp/obs/proprio") > 0
                 and node.count_publishers("/wp/waypoints") > 0 or proc.popen.poll() is not None, 60, "the planner")
        assert proc.popen.poll() is None, proc.output
        stamp = 550_000_000
        for view, pub in pubs.items():
            pub.publish(rgb_to_image_msg(np.full((224, 224, 3), 90, np.uint8), stamp))
        proprio_pub.publish(make_joint_state(libero_config.proprio.names, [0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.04, -0.04],
                                             stamp))
        replan_pub.publish(Header(stamp=ns_to_stamp(stamp)))
        wait_for(lambda: len(node.get("/wp/waypoints")) == 1, 30, "the plan")
        replan_pub.publish(Header(stamp=ns_to_stamp(stamp)))  # the same request again
        wait_for(lambda: len(node.get("/wp/waypoints")) == 2, 10, "the plan sent again")
        wait_for(lambda: any(status_values(s).get("count.republished") == "1"
                             for s in diagnostics_of(node, "/planner")), 5, "count.republished")
    finally:
        proc.stop()
        node.close()
    first, again = node.get("/wp/waypoints")
    assert stamp_to_ns(first.header.stamp) == stamp_to_ns(again.header.stamp) == stamp
    assert [list(p.positions) for p in first.points] == [list(p.positions) for p in again.points]
