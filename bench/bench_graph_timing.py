"""Timing of the running ROS graph: aggregator + planner + filler as separate processes over real DDS, driven by a
robot stand-in (3 JPEG cameras at 15 Hz, joint feedback at 100 Hz that tracks the commands it receives).

For each control rate and replan mode, model calls are padded to emulate a 300 ms VLM and a 60 ms AE (the nodes'
``emulate_latency_ms``; the tiny random-weight models compute faster than that), then:

- command period as the robot receives it: p50 / p99, and jitter = |period - 1/rate| p50 / p99;
- starvation: control ticks without a model action once commanding began (filler ``count.starved``);
- operator stop latency: stop published -> first hold command received, over ``--stops`` stops per run;
- observation-to-first-command overhead without model compute: after each /wp/resume, the filler's
  ``obs_to_first_command`` (observation set received -> first command of the plan made from it) minus the planner's
  and the filler's model time (both padded, both measured); what is left is transport, queueing and tick alignment.

The full run (2 minutes per configuration, about 12 minutes)::

    .venv/bin/python bench/bench_graph_timing.py --duration 120

A quick look::

    .venv/bin/python bench/bench_graph_timing.py --duration 20 --rates 15 --modes lookahead --stops 3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "ros_policy"), str(REPO / "tests" / "ros")]  # the test suite's stand-ins
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from fake_robot import FakeRobot  # noqa: E402
from policy_fixtures import write_tiny_policy  # noqa: E402
from ros_helpers import Listener, diagnostics_of, wait_for, wp_launch  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from wp_policy.paths import config_dir  # noqa: E402
from wp_policy.robot_config import load_robot_config  # noqa: E402
from wp_policy.ros.diagnostics import status_values  # noqa: E402
from wp_policy.ros.plan_msgs import stop_message  # noqa: E402
from wp_policy.ros.topics import RESUME_SERVICE  # noqa: E402
from wp_policy.ros.qos import qos_profile  # noqa: E402

PLANNER_SEED = 1  # the untrained planner of this seed plans d = 25 ticks per waypoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of steady commanding measured per run")
    p.add_argument("--rates", type=float, nargs="+", default=[15.0, 50.0], help="control rates (Hz)")
    p.add_argument("--modes", nargs="+", default=["after_last", "lookahead"], choices=["after_last", "lookahead"])
    p.add_argument("--vlm-ms", type=float, default=300.0, help="emulated planner latency")
    p.add_argument("--ae-ms", type=float, default=60.0, help="emulated AE latency (one chunk)")
    p.add_argument("--plan-lead", type=float, default=0.5, help="filler plan_lead_s (lookahead budget)")
    p.add_argument("--stops", type=int, default=8, help="operator stops (each followed by /wp/resume) per run")
    return p.parse_args(argv)


@dataclass
class RunResult:
    rate: float
    mode: str
    ticks: int
    period_ms: tuple[float, float]
    jitter_ms: tuple[float, float]
    starved: int
    stop_ms: list[float]
    overhead_ms: float | None
    models_ms: dict[str, float]


def write_inputs(work: Path, rate: float, args) -> tuple[Path, Path]:
    """A robot YAML at ``rate`` and a params YAML with the emulated latencies."""
    robot = yaml.safe_load((config_dir() / "robots" / "r1lite.yaml").read_text())
    robot["control_hz"] = rate
    robot_path = work / f"r1lite_{rate:g}hz.yaml"
    robot_path.write_text(yaml.safe_dump(robot))
    params = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    params["planner"]["ros__parameters"].update(num_waypoints=3, cpu_threads=1, emulate_latency_ms=args.vlm_ms)
    params["filler"]["ros__parameters"].update(cpu_threads=1, emulate_latency_ms=args.ae_ms, num_flow_steps=2,
                                               feedback_timeout=0.5)
    params_path = work / f"params_{rate:g}hz.yaml"
    params_path.write_text(yaml.safe_dump(params))
    return robot_path, params_path


def moving(robot: FakeRobot, window: float = 0.5) -> bool:
    cmds = robot.commands_since(time.monotonic() - window)
    return len(cmds) > 2 and len({a.tobytes() for _, a in cmds}) > 1


def filler_count(listener: Listener, key: str) -> int:
    statuses = diagnostics_of(listener, "/filler")
    return int(status_values(statuses[-1]).get(key, 0)) if statuses else 0


def stop_latencies(robot: FakeRobot, listener: Listener, n: int) -> list[float]:
    """Stop, measure publish -> first hold received, resume; ``n`` times."""
    pub = listener.create_publisher(JointTrajectory, "/wp/waypoints", qos_profile("reliable"))
    client = listener.create_client(Trigger, RESUME_SERVICE)
    client.wait_for_service(timeout_sec=10)
    out = []
    for _ in range(n):
        wait_for(lambda: moving(robot), 60, "motion before a stop")
        time.sleep(np.random.default_rng(len(out)).uniform(0.1, 0.6))  # stop at an arbitrary point of a chunk
        sent = time.monotonic()
        pub.publish(stop_message(time.time_ns()))
        time.sleep(0.6)
        cmds = robot.commands_since(sent)
        hold = cmds[-1][1]
        first = next(t for t, a in cmds if np.allclose(a, hold, atol=1e-9, rtol=0))
        out.append(first - sent)
        future = client.call_async(Trigger.Request())
        wait_for(future.done, 10, "/wp/resume")
    wait_for(lambda: moving(robot), 60, "motion after the last resume")
    return out


def window_values(listener: Listener, node: str, key: str, skip: dict[str, int]) -> list[float]:
    """``key`` from each /diagnostics window of ``node`` after its first ``skip[node]`` messages."""
    statuses = diagnostics_of(listener, node)[skip[node]:]
    return [float(v[key]) for s in statuses if key in (v := status_values(s))]


def model_times(listener: Listener, skip: dict[str, int]) -> dict[str, float]:
    """Measured VLM / AE call times (ms, padded to the emulated latency): median of the window p50s, and max."""
    out = {}
    for name, node, key in (("vlm", "/planner", "latency_ms.plan"), ("ae", "/filler", "latency_ms.fill")):
        p50 = window_values(listener, node, f"{key}.p50", skip)
        worst = window_values(listener, node, f"{key}.max", skip)
        out[name] = float(np.median(p50)) if p50 else float("nan")
        out[f"{name}_max"] = max(worst, default=float("nan"))
    return out


def overhead(listener: Listener, skip: dict[str, int], models: dict[str, float]) -> float | None:
    """Median obs_to_first_command minus the median VLM and AE call (ms); the windows before ``skip`` hold the
    start-up plan, whose first model calls are slow."""
    first = window_values(listener, "/filler", "latency_ms.obs_to_first_command.p50", skip)
    return float(np.median(first) - models["vlm"] - models["ae"]) if first else None


def run_one(rate: float, mode: str, files, work: Path, args) -> RunResult:
    robot_path, params_path = write_inputs(work, rate, args)
    graph = wp_launch("r1lite", *files.launch_args(), f"robot_config:={robot_path}", f"params_file:={params_path}",
                      "device:=cpu", f"replan_mode:={mode}", f"plan_lead_s:={args.plan_lead}",
                      "instruction:=pick up the cup")
    robot = FakeRobot(load_robot_config(robot_path))
    listener = Listener("bench_listener")
    listener.listen(DiagnosticArray, "/diagnostics", depth=1000)
    try:
        wait_for(lambda: moving(robot) or graph.popen.poll() is not None, 240, "the graph to move the robot")
        if graph.popen.poll() is not None:
            raise RuntimeError(f"the graph exited:\n{graph.output}")
        time.sleep(3.0)  # past the first plan
        starved0, t0 = filler_count(listener, "count.starved"), time.monotonic()
        skip = {node: len(diagnostics_of(listener, node)) for node in ("/filler", "/planner")}
        for _ in tqdm(range(int(args.duration)), desc=f"{rate:g} Hz {mode}", leave=False, disable=None):
            time.sleep(1.0)
        cmds = robot.commands_since(t0)
        starved = filler_count(listener, "count.starved") - starved0
        stops = stop_latencies(robot, listener, args.stops)
        time.sleep(1.5)  # the last diagnostics window
        periods = np.diff([t for t, _ in cmds]) * 1e3
        jitter = np.abs(periods - 1e3 / rate)
        models = model_times(listener, skip)
        return RunResult(rate, mode, len(cmds), tuple(np.percentile(periods, [50, 99])),
                         tuple(np.percentile(jitter, [50, 99])), starved, stops, overhead(listener, skip, models),
                         models)
    finally:
        graph.stop()
        listener.close()
        robot.close()


def main(argv=None) -> None:
    args = parse_args(argv)
    from wp_training.data.text_tokenizer import train_sentencepiece

    rclpy.init()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_graph_") as tmp:
        work = Path(tmp)
        robot = load_robot_config("r1lite")
        files = write_tiny_policy(work, robot, train_sentencepiece(work / "tok.model"), seed=PLANNER_SEED)
        for rate in args.rates:
            for mode in args.modes:
                results.append(run_one(rate, mode, files, work, args))
    rclpy.try_shutdown()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}; {args.duration:g} s per run; emulated VLM "
          f"{args.vlm_ms:g} ms, AE {args.ae_ms:g} ms; plan_lead_s {args.plan_lead:g}")
    print("| rate | replan mode | ticks | period p50 / p99 ms | jitter p50 / p99 ms | starved ticks | "
          "VLM call p50 / max ms | AE call p50 / max ms | obs->first command overhead ms |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ovh = "-" if r.overhead_ms is None else f"{r.overhead_ms:.1f}"
        m = r.models_ms
        print(f"| {r.rate:g} Hz | {r.mode} | {r.ticks} | {r.period_ms[0]:.1f} / {r.period_ms[1]:.1f} | "
              f"{r.jitter_ms[0]:.1f} / {r.jitter_ms[1]:.1f} | {r.starved} | {m['vlm']:.0f} / {m['vlm_max']:.0f} | "
              f"{m['ae']:.0f} / {m['ae_max']:.0f} | {ovh} |")
    stops = np.concatenate([r.stop_ms for r in results]) * 1e3
    if stops.size:
        p50, p99 = np.percentile(stops, [50, 99])
        print(f"\noperator stop latency (publish -> first hold received), {stops.size} stops: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {stops.max():.1f} ms")


if __name__ == "__main__":
    main()
