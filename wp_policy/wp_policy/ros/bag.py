"""Record and replay ROS 2 topics with rclpy + rosbags (``ros2 bag`` is not installable from PyPI).

Recording subscribes in raw mode (CDR bytes, never deserialised) with a QoS adapted to the publishers, like
rosbag2: best effort if any publisher is best effort, transient local if all publishers are latched. Topics are
discovered continuously, so "all" also picks up topics that appear later.

Replay publishes the recorded bytes with their recorded timing (``rate`` scales it) or in **lock-step**: bag time is
cut into steps of ``step_s`` (0: one step per distinct log time); each step publishes its messages, then ``/clock``
at the step's end, then waits until every ``ack`` topic has delivered at least one new message (or ``ack_timeout_s``
passes; timeouts are counted in the result). With ``use_sim_time`` nodes and an ack on the graph's last output per
step, the graph sees identical inputs at identical times on every run. Choose ``step_s`` so that every step makes the
ack topic publish (e.g. the camera period with ack ``/wp/obs/proprio``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from wp_policy.ros.bag_io import BagMessage, BagReader, BagWriter, typestore
from wp_policy.ros.conversions import clock_msg
from wp_policy.ros.topics import CLOCK_TOPIC

IGNORED_BY_ALL = ("/rosout", "/parameter_events")  # recorded only when named explicitly


def import_msg_type(msgtype: str):
    """``pkg/msg/Type`` -> the rclpy message class."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def _qos(reliable: bool, latched: bool, depth: int = 100) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagRecorder(Node):
    """Writes every message of the selected topics (None: all) to ``writer`` with its receive time."""

    def __init__(self, writer: BagWriter, topics: Sequence[str] | None = None, discovery_period: float = 0.2):
        super().__init__("wp_bag_recorder")
        self.writer = writer
        self.topics = None if topics is None else set(topics)
        self._subs: dict[str, object] = {}
        self._discover()
        self.create_timer(discovery_period, self._discover)

    def _wanted(self, name: str) -> bool:
        return name in self.topics if self.topics is not None else name not in IGNORED_BY_ALL

    def _discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name in self._subs or not self._wanted(name):
                continue
            pubs = self.get_publishers_info_by_topic(name)
            if not pubs:
                continue  # subscribers only: nothing to record yet, and no QoS to adapt to
            if types[0] not in typestore().types:
                self.get_logger().warning(f"skipping {name}: type {types[0]} unknown to rosbags")
                self._subs[name] = None
                continue
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)
            latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
            self.writer.add_topic(name, types[0], latched=latched, reliable=reliable)
            self._subs[name] = self.create_subscription(
                import_msg_type(types[0]), name, lambda data, n=name: self._write(n, data), _qos(reliable, latched),
                raw=True,
            )
            self.get_logger().info(f"recording {name} [{types[0]}]")

    def _write(self, topic: str, data: bytes) -> None:
        self.writer.write(topic, self.get_clock().now().nanoseconds, data)


@dataclass(frozen=True)
class PlayOptions:
    rate: float = 1.0  # timed replay speed (2.0: twice as fast)
    lockstep: bool = False
    step_s: float = 0.0  # lock-step step length in bag time; 0: one step per distinct log time
    acks: tuple[str, ...] = ()  # lock-step: topics that must publish after each step
    ack_timeout_s: float = 5.0
    clock: bool = False  # publish /clock from bag time (always on in lock-step)
    topics: tuple[str, ...] | None = None  # None: every topic in the bag
    wait_subscribers_s: float = 5.0  # wait this long for every topic to have a subscriber before starting
    settle_s: float = 0.5  # then this long, so subscribers also finish matching us (best-effort readers drop
    #                        messages from writers they have not matched yet)

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.step_s < 0 or self.ack_timeout_s <= 0 or self.settle_s < 0:
            raise ValueError(f"step_s must be >= 0 and ack_timeout_s > 0, got {self.step_s}, {self.ack_timeout_s}")
        if self.acks and not self.lockstep:
            raise ValueError("acks only apply to lock-step replay")


@dataclass(frozen=True)
class PlayResult:
    published: int
    steps: int
    ack_timeouts: int
    wall_s: float


class BagPlayer(Node):
    """Publishes a bag's messages (see module docstring); call :meth:`play`."""

    def __init__(self, reader: BagReader, options: PlayOptions = PlayOptions()):
        super().__init__("wp_bag_player")
        self._executor = SingleThreadedExecutor(context=self.context)  # the player drives its own callbacks
        self._executor.add_node(self)
        self.reader = reader
        self.options = options
        names = options.topics if options.topics is not None else tuple(reader.topics)
        missing = sorted(set(names) - set(reader.topics))
        if missing:
            raise ValueError(f"bag {reader.path} has no topic(s) {missing}")
        self.pubs = {
            n: self.create_publisher(import_msg_type(reader.topics[n].msgtype), n, _qos(True, reader.topics[n].latched))
            for n in names
        }
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, _qos(True, False, depth=10))
        self._ack_counts = dict.fromkeys(options.acks, 0)
        for topic in options.acks:
            self._subscribe_ack(topic)

    def _subscribe_ack(self, topic: str) -> None:
        deadline = time.monotonic() + self.options.wait_subscribers_s
        while not self.get_publishers_info_by_topic(topic) and time.monotonic() < deadline:
            self._spin(0.05)
        infos = self.get_publishers_info_by_topic(topic)
        if not infos:
            raise RuntimeError(f"ack topic {topic} has no publisher; is the graph running?")

        def count(_, t=topic):
            self._ack_counts[t] += 1

        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        sub = self.create_subscription(import_msg_type(infos[0].topic_type), topic, count, _qos(reliable, False, 10),
                                       raw=True)
        while sub.get_publisher_count() == 0 and time.monotonic() < deadline:
            self._spin(0.05)

    def _spin(self, timeout_s: float) -> None:
        self._executor.spin_once(timeout_sec=max(timeout_s, 0.0))

    def wait_for_subscribers(self) -> list[str]:
        """Wait until every topic has a subscriber (or the timeout); returns the topics that still have none."""
        deadline = time.monotonic() + self.options.wait_subscribers_s
        while True:
            lonely = [n for n, p in self.pubs.items() if p.get_subscription_count() == 0]
            if not lonely or time.monotonic() >= deadline:
                break
            self._spin(0.05)
        settle = time.monotonic() + self.options.settle_s
        while time.monotonic() < settle:
            self._spin(0.05)
        return lonely

    def play(self, progress: Iterable | None = None) -> PlayResult:
        """Replay the whole bag; ``progress`` wraps the message iterator (e.g. tqdm)."""
        t0 = time.monotonic()
        if self.options.clock or self.options.lockstep:
            self._start_clock()
        msgs = self.reader.messages(list(self.pubs))
        msgs = progress(msgs) if progress else msgs
        if self.options.lockstep:
            published, steps, timeouts = self._play_lockstep(msgs)
        else:
            published, steps, timeouts = self._play_timed(msgs), 0, 0
        self._flush()
        return PlayResult(published, steps, timeouts, time.monotonic() - t0)

    def _flush(self, timeout_s: float = 3.0) -> None:
        """Wait until reliable readers acknowledged everything: a process that exits right after its last publish
        otherwise takes the tail of the bag with it."""
        for pub in self.pubs.values():
            if pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
                pub.wait_for_all_acked(Duration(seconds=timeout_s))

    def _start_clock(self) -> None:
        """Set /clock to the bag's start before any message, so sim-time nodes never see the jump from 0 mid-step."""
        self.clock_pub.publish(clock_msg(self.reader.start_ns))
        settle = time.monotonic() + 0.1
        while time.monotonic() < settle:
            self._spin(0.02)

    def _play_timed(self, msgs: Iterator[BagMessage]) -> int:
        n, start_wall, start_log = 0, None, None
        for m in msgs:
            if start_wall is None:
                start_wall, start_log = time.monotonic(), m.log_ns
            target = start_wall + (m.log_ns - start_log) * 1e-9 / self.options.rate
            while (left := target - time.monotonic()) > 0:
                self._spin(min(left, 0.01))
            if self.options.clock:
                self.clock_pub.publish(clock_msg(m.log_ns))
            self.pubs[m.topic].publish(m.data)
            n += 1
        return n

    def _play_lockstep(self, msgs: Iterator[BagMessage]) -> tuple[int, int, int]:
        n = steps = timeouts = 0
        for end_ns, batch in _steps(msgs, int(self.options.step_s * 1e9)):
            before = dict(self._ack_counts)
            for m in batch:
                self.pubs[m.topic].publish(m.data)
            self.clock_pub.publish(clock_msg(end_ns))
            n += len(batch)
            steps += 1
            timeouts += not self._wait_acks(before, steps, end_ns)
        return n, steps, timeouts

    def _wait_acks(self, before: dict[str, int], step: int, end_ns: int) -> bool:
        deadline = time.monotonic() + self.options.ack_timeout_s
        while any(self._ack_counts[t] == before[t] for t in before):
            if time.monotonic() >= deadline:
                silent = [t for t in before if self._ack_counts[t] == before[t]]
                self.get_logger().warning(f"lock-step step {step} (bag time {end_ns * 1e-9:.3f} s): no message on "
                                          f"{silent} within {self.options.ack_timeout_s} s; continuing")
                return False
            self._spin(0.002)
        return True


def _steps(msgs: Iterator[BagMessage], step_ns: int) -> Iterator[tuple[int, list[BagMessage]]]:
    """Group log-time-ordered messages into lock-step steps -> (step end time ns, messages)."""
    batch: list[BagMessage] = []
    end = None
    for m in msgs:
        if end is None:
            end = m.log_ns + step_ns if step_ns else m.log_ns
        if m.log_ns > end:
            yield end, batch
            batch = []
            while m.log_ns > end:
                end = end + step_ns if step_ns else m.log_ns
        batch.append(m)
    if batch:
        yield end, batch
