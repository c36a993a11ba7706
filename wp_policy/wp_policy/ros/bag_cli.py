"""wp-bag: record, replay, inspect and synthesise MCAP bags without ``ros2 bag`` (rclpy + rosbags).

    wp-bag synth r1lite -o /tmp/r1.mcap --duration 10            # an R1-Lite-style bag, no robot needed
    wp-bag info /tmp/r1.mcap
    wp-bag replay /tmp/r1.mcap --rate 1.0                        # original timing
    wp-bag replay /tmp/r1.mcap --lockstep --step 0.0667 --ack /wp/obs/proprio
    wp-bag record all -o /tmp/run.mcap --duration 30             # or: wp-bag record /wp/waypoints /diagnostics -o ...

``-o x.mcap`` writes one MCAP file; any other name writes a rosbag2 directory (metadata.yaml + MCAP).
Record stops on Ctrl-C or after ``--duration`` seconds and always finalises the file.
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from tqdm import tqdm

from wp_policy.cli_help import HelpFormatter
from wp_policy.robot_config import load_robot_config
from wp_policy.ros.bag_io import BagReader, BagWriter
from wp_policy.ros.bag_synth import SynthSpec, write_synthetic_bag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-bag", description=__doc__,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=f"{summary}.", epilog=f"example:\n  {example}",
                              formatter_class=HelpFormatter)

    rec = command("record", "record topics to a bag (MCAP file or rosbag2 directory) until Ctrl-C or --duration",
                  "wp-bag record /wp/waypoints /diagnostics -o /tmp/run.mcap --duration 30")
    rec.add_argument("topics", nargs="+", help="topic names, or 'all' (every topic seen during discovery)")
    rec.add_argument("-o", "--output", required=True, help="x.mcap (one file) or a rosbag2 directory name")
    rec.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    play = command("replay", "publish a bag's messages, timed (original rhythm x --rate) or in lock-step",
                   "wp-bag replay /tmp/r1.mcap --lockstep --step 0.0667 --ack /wp/obs/proprio")
    play.add_argument("bag", help="an MCAP file or a rosbag2 directory")
    play.add_argument("--rate", type=float, default=1.0, help="timed replay speed factor")
    play.add_argument("--lockstep", action="store_true", help="step through bag time, publishing /clock")
    play.add_argument("--step", type=float, default=0.0, help="lock-step length in s of bag time (0: per message)")
    play.add_argument("--ack", action="append", default=[],
                      help="lock-step: wait for a message on this topic after each step (repeatable)")
    play.add_argument("--ack-timeout", type=float, default=5.0, help="lock-step: seconds to wait for acks")
    play.add_argument("--clock", action="store_true", help="timed replay: also publish /clock from bag time")
    play.add_argument("--topics", nargs="+", default=None, help="replay only these topics (default: all)")
    play.add_argument("--wait-subscribers", type=float, default=5.0,
                      help="seconds to wait for subscribers on every topic before starting")
    play.add_argument("--settle", type=float, default=0.5,
                      help="seconds to wait after that, so subscribers finish discovery too")
    info = command("info", "list a bag's topics with message types, counts, rates and time span",
                   "wp-bag info /tmp/r1.mcap")
    info.add_argument("bag", help="an MCAP file or a rosbag2 directory")
    synth = command("synth", "write a synthetic bag for a robot config: its cameras (JPEG) and joint feedback on "
                    "the config's topics, with realistic stamps and latencies, no robot needed",
                    "wp-bag synth r1lite -o /tmp/r1.mcap --duration 10")
    synth.add_argument("robot", help="robot config name (configs/robots/) or YAML path")
    synth.add_argument("-o", "--output", required=True, help="x.mcap (one file) or a rosbag2 directory name")
    synth.add_argument("--duration", type=float, default=SynthSpec.duration_s, help="seconds of robot time")
    synth.add_argument("--camera-hz", type=float, default=SynthSpec.camera_hz, help="frame rate of every camera")
    synth.add_argument("--feedback-hz", type=float, default=SynthSpec.feedback_hz,
                       help="rate of every joint-feedback topic")
    synth.add_argument("--width", type=int, default=SynthSpec.width, help="image width in pixels")
    synth.add_argument("--height", type=int, default=SynthSpec.height, help="image height in pixels")
    synth.add_argument("--seed", type=int, default=SynthSpec.seed, help="seed of the images and joint motion")
    return parser


def _record(args) -> int:
    from wp_policy.ros.bag import BagRecorder

    topics = None if args.topics == ["all"] else args.topics
    rclpy.init()
    with BagWriter(args.output) as writer:
        recorder = BagRecorder(writer, topics)
        if args.duration > 0:
            recorder.create_timer(args.duration, lambda: rclpy.try_shutdown(context=recorder.context))
        try:
            rclpy.spin(recorder)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            recorder.destroy_node()
            rclpy.try_shutdown()
    print(f"wrote {args.output}: " + ", ".join(f"{t} {n}" for t, n in sorted(writer.counts.items())))
    return 0


def _replay(args) -> int:
    from wp_policy.ros.bag import BagPlayer, PlayOptions

    options = PlayOptions(rate=args.rate, lockstep=args.lockstep, step_s=args.step, acks=tuple(args.ack),
                          ack_timeout_s=args.ack_timeout, clock=args.clock,
                          topics=tuple(args.topics) if args.topics else None, wait_subscribers_s=args.wait_subscribers,
                          settle_s=args.settle)
    rclpy.init()
    try:
        with BagReader(args.bag) as reader:
            player = BagPlayer(reader, options)
            lonely = player.wait_for_subscribers()
            if lonely:
                print(f"wp-bag: no subscriber on {lonely}; replaying anyway", file=sys.stderr)
            result = player.play(progress=lambda it: tqdm(it, total=reader.message_count, unit="msg", disable=None))
    except (KeyboardInterrupt, ExternalShutdownException):
        return 130
    finally:
        rclpy.try_shutdown()
    print(f"replayed {result.published} messages in {result.wall_s:.1f} s"
          + (f" ({result.steps} lock-step steps, {result.ack_timeouts} ack timeouts)" if options.lockstep else ""))
    return 0


def _info(args) -> int:
    with BagReader(args.bag) as reader:
        span = (reader.end_ns - reader.start_ns) * 1e-9
        print(f"{reader.path}: {reader.message_count} messages over {span:.2f} s")
        for t in sorted(reader.topics.values(), key=lambda t: t.name):
            rate = t.count / span if span > 0 else 0.0
            print(f"  {t.name}  [{t.msgtype}]  {t.count} msgs ({rate:.1f} Hz){'  latched' if t.latched else ''}")
    return 0


def _synth(args) -> int:
    spec = SynthSpec(duration_s=args.duration, camera_hz=args.camera_hz, feedback_hz=args.feedback_hz,
                     width=args.width, height=args.height, seed=args.seed)
    counts = write_synthetic_bag(args.output, load_robot_config(args.robot), spec)
    print(f"wrote {args.output}: {sum(counts.values())} messages on {len(counts)} topics")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"record": _record, "replay": _replay, "info": _info, "synth": _synth}[args.command]
    try:
        return handler(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        print(f"wp-bag {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
