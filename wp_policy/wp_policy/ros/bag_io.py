"""Bag files through ``rosbags`` (no rclpy, no rosbag2): MCAP, serialised CDR in and out, ROS 2 Kilted types.

Paths: ``out.mcap`` is a single MCAP file; any other path is a rosbag2 directory (``metadata.yaml`` + MCAP), the
layout ``ros2 bag`` writes. Both read back with :class:`BagReader` (and with ``ros2 bag`` / Foxglove). Messages stay
serialised (CDR bytes) end to end: recording and replay never re-encode them. Latched topics (all publishers
transient-local, e.g. /wp/instruction) keep that QoS in the bag so replay can offer it again.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = Stores.ROS2_KILTED


@functools.cache
def typestore():
    return get_typestore(STORE)


def serialize(msg: Any, msgtype: str) -> bytes:
    """A rosbags message object -> CDR bytes (what rclpy publishes raw)."""
    return bytes(typestore().serialize_cdr(msg, msgtype))


def deserialize(data: bytes, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)


def msg_class(msgtype: str) -> Any:
    """The rosbags dataclass for ``pkg/msg/Type`` (e.g. to build messages without rclpy)."""
    try:
        return typestore().types[msgtype]
    except KeyError:
        raise ValueError(f"message type {msgtype!r} is not in the rosbags {STORE.value} typestore") from None


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    count: int
    latched: bool  # offered transient-local when recorded


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_ns: int  # receive time when recorded (what replay timing follows)
    data: bytes  # serialised CDR


def _qos(latched: bool, reliable: bool) -> Qos:
    zero = QosTime(0, 0)
    return Qos(
        QosHistory.KEEP_LAST, 1 if latched else 10,
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        zero, zero, QosLiveliness.AUTOMATIC, zero, False,
    )


class BagWriter:
    """Append-only bag writer; ``close()`` finalises the file (use as a context manager)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists; choose another output or delete it")
        single = self.path.suffix == ".mcap"
        self._dir = self.path.with_name(f".{self.path.name}.partial") if single else self.path
        if self._dir.exists():
            shutil.rmtree(self._dir)
        self._writer = Writer(self._dir, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._single = single
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, name: str, msgtype: str, latched: bool = False, reliable: bool = True) -> None:
        if name in self._connections:
            return
        self._connections[name] = self._writer.add_connection(
            name, msgtype, typestore=typestore(), offered_qos_profiles=[_qos(latched, reliable)]
        )
        self.counts[name] = 0

    def write(self, topic: str, log_ns: int, data: bytes | memoryview) -> None:
        if topic not in self._connections:
            raise KeyError(f"topic {topic} was not added to the bag")
        self._writer.write(self._connections[topic], int(log_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        if self._single:
            shutil.move(self._dir / f"{self._dir.name}.mcap", self.path)
            shutil.rmtree(self._dir)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BagReader:
    """Reads a bag written by :class:`BagWriter`, ``ros2 bag record`` (MCAP) or any rosbags-readable rosbag2."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} not found")
        self._reader = Reader(self.path)
        self._reader.open()
        self.topics: dict[str, BagTopic] = {}
        for c in self._reader.connections:
            profiles = getattr(c.ext, "offered_qos_profiles", None) or []
            latched = bool(profiles) and all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)
            self.topics[c.topic] = BagTopic(c.topic, c.msgtype, c.msgcount, latched)

    @property
    def start_ns(self) -> int:
        return self._reader.start_time

    @property
    def end_ns(self) -> int:
        return self._reader.end_time

    @property
    def message_count(self) -> int:
        return self._reader.message_count

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
        """Messages in log-time order, optionally only on ``topics`` (unknown names raise KeyError)."""
        if topics is not None:
            unknown = sorted(set(topics) - set(self.topics))
            if unknown:
                raise KeyError(f"{self.path}: no topic(s) {unknown}; topics: {sorted(self.topics)}")
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        for conn, log_ns, data in self._reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, log_ns, bytes(data))

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
