"""Streaming RLDS samples into torch: per-rank/per-worker sharding, seeded shuffling that yields early, resume.

Every DataLoader worker on every rank reads its own contiguous range of episodes (shard ``rank * workers +
worker`` of ``world * workers``), split into chunks of ``episode_chunk`` episodes that are visited in a seeded
random order each epoch. Samples pass through a shuffle buffer that starts yielding once ``shuffle_warmup``
samples are in (the original recipe waited for a full 5000-sample buffer and took ~6 minutes to its first batch) and
keeps growing towards ``shuffle_buffer`` by yielding one sample per two it takes in until it is full.

Every random choice comes from ``numpy.random.default_rng([seed, shard, epoch])``, so a run is reproducible for a
given (seed, world size, worker count); per-episode choices (the VLM's stride offset) use
``default_rng([seed, epoch, episode])``. Streams repeat forever by default (the trainer counts steps, and DDP
ranks never run dry at different times); the shuffle buffer empties at each epoch's end.

Resuming after ``n`` consumed batches: DataLoader hands out worker batches round-robin, so worker ``w`` had
produced ``ceil((n - w) / workers)`` batches; the resumed loader's worker ``w`` continues the stream of worker
``(w + n) % workers`` (so the batch order carries on unchanged), skips whole epochs without reading them when the
dataset knows their size, and replays the rest of the stream dropping what was already produced, before any image
is decoded.

The buffer holds compact samples (encoded image bytes, small arrays); :meth:`StreamingDataset.finalize` decodes
images and builds the float tensors only for samples leaving the buffer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wp_training.data.rlds_reader import RldsReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    """How samples are streamed; shared by the AE and VLM datasets."""

    shuffle_buffer: int = 2000  # samples held for shuffling (compact: images stay encoded)
    shuffle_warmup: int = 32  # samples buffered before the first one is yielded
    episode_chunk: int = 64  # consecutive episodes read as one range; ranges are visited in random order
    seed: int = 0
    repeat: bool = True  # False: one pass over the shard (evaluation, statistics)

    def __post_init__(self):
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if not 1 <= self.shuffle_warmup <= self.shuffle_buffer:
            raise ValueError(
                f"shuffle_warmup must be in 1..shuffle_buffer ({self.shuffle_buffer}), got {self.shuffle_warmup}"
            )
        if self.episode_chunk < 1:
            raise ValueError(f"episode_chunk must be >= 1, got {self.episode_chunk}")


@dataclass(frozen=True)
class Shard:
    """Which slice of the data this process/worker reads."""

    index: int
    count: int
    worker: int
    num_workers: int


def current_shard(rank: int, world_size: int, consumed_batches: int = 0) -> Shard:
    """Shard of the calling DataLoader worker (or of the main process when there are no workers).

    A loader resumed after ``consumed_batches`` asks worker 0 first again, while the next batch of the interrupted
    run was due from worker ``consumed_batches % workers``; so worker ``w`` takes over the stream of worker
    ``(w + consumed_batches) % workers``.
    """
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    worker = (worker + consumed_batches) % workers
    return Shard(rank * workers + worker, world_size * workers, worker, workers)


def distributed_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shard_range(num_items: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of shard ``shard``; with fewer items than shards each shard repeats one item."""
    if num_items <= 0:
        raise ValueError("the dataset has no episodes")
    if num_items < num_shards:
        log.warning("only %d episodes for %d shards (ranks x workers): shards share episodes", num_items, num_shards)
        return shard % num_items, shard % num_items + 1
    return shard * num_items // num_shards, (shard + 1) * num_items // num_shards


def chunk_order(start: int, stop: int, chunk: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    ranges = [(a, min(a + chunk, stop)) for a in range(start, stop, chunk)]
    return [ranges[i] for i in rng.permutation(len(ranges))]


def shuffle_buffer(items: Iterable[Any], capacity: int, warmup: int, rng: np.random.Generator) -> Iterator[Any]:
    """Seeded shuffling that yields as soon as ``warmup`` items are buffered (see the module docstring)."""
    buf: list[Any] = []
    taken = 0
    for item in items:
        buf.append(item)
        taken += 1
        if len(buf) < warmup or (len(buf) < capacity and taken % 2):
            continue
        i = int(rng.integers(len(buf)))
        buf[i], buf[-1] = buf[-1], buf[i]
        yield buf.pop()
    for i in rng.permutation(len(buf)):
        yield buf[i]


def batches_before(consumed_batches: int, worker: int, num_workers: int) -> int:
    """Batches worker ``worker`` had produced when the loader had handed out ``consumed_batches`` (round-robin)."""
    return max(0, math.ceil((consumed_batches - worker) / num_workers))


class StreamingDataset(IterableDataset):
    """Base of the AE and VLM datasets: subclasses turn one episode into compact samples and finalise them.

    Subclasses set ``observation_keys``/``step_keys`` (the fields parsed from the RLDS) and implement
    :meth:`episode_samples` and :meth:`finalize`. The reader is opened lazily in each worker process.
    """

    observation_keys: tuple[str, ...] = ()
    step_keys: tuple[str, ...] = ("action", "language_instruction")

    def __init__(self, rlds_dir: str, split: str, stream: StreamConfig, rank: int | None, world_size: int | None):
        super().__init__()
        default_rank, default_world = distributed_rank_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} out of range for world_size {self.world_size}")
        self.rlds_dir, self.split, self.stream = rlds_dir, split, stream
        self._reader: RldsReader | None = None
        self._resume_batches, self._batch_size = 0, 1

    @property
    def reader(self) -> RldsReader:
        if self._reader is None:
            self._reader = RldsReader(self.rlds_dir, self.split)
        return self._reader

    def __getstate__(self):  # spawned workers re-open the dataset files themselves
        state = dict(self.__dict__)
        state["_reader"] = None
        return state

    def resume(self, consumed_batches: int, batch_size: int) -> None:
        """Make the next iteration continue after ``consumed_batches`` batches of ``batch_size`` (same loader setup)."""
        if consumed_batches < 0 or batch_size < 1:
            raise ValueError(f"consumed_batches ({consumed_batches}) must be >= 0 and batch_size ({batch_size}) >= 1")
        self._resume_batches, self._batch_size = consumed_batches, batch_size

    def episode_samples(self, index: int, episode: dict, rng: np.random.Generator) -> Iterator[dict]:
        """Compact samples of one episode; ``rng`` is seeded by (seed, epoch, episode index)."""
        raise NotImplementedError

    def finalize(self, sample: dict) -> dict:
        raise NotImplementedError

    def epoch_size(self, start: int, stop: int, epoch: int) -> int | None:
        """Samples that episodes ``start .. stop - 1`` give in ``epoch``, if known without reading images."""
        return None

    def episode_rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.stream.seed, epoch, index])

    def raw_samples(self, shard: Shard, first_epoch: int = 0) -> Iterator[dict]:
        """Compact samples of ``shard`` after shuffling, epoch after epoch (the buffer empties between epochs)."""
        start, stop = shard_range(self.reader.num_episodes, shard.index, shard.count)
        epoch = first_epoch
        while self.stream.repeat or epoch == 0:
            rng = np.random.default_rng([self.stream.seed, shard.index, epoch])
            count = 0
            for sample in shuffle_buffer(self._epoch_samples(start, stop, epoch, rng), self.stream.shuffle_buffer,
                                         self.stream.shuffle_warmup, rng):
                count += 1
                yield sample
            if count == 0:
                raise ValueError(f"{self.reader.dir}: episodes {start}..{stop - 1} (shard {shard.index} of "
                                 f"{shard.count}) give no samples; use fewer ranks/workers or more data")
            epoch += 1

    def _epoch_samples(self, start: int, stop: int, epoch: int, rng: np.random.Generator) -> Iterator[dict]:
        for a, b in chunk_order(start, stop, self.stream.episode_chunk, rng):
            for index, episode in self.reader.episodes(a, b, self.observation_keys, self.step_keys):
                for sample in self.episode_samples(index, episode, self.episode_rng(epoch, index)):
                    sample["epoch"] = epoch  # seeds the sample's image augmentation
                    yield sample

    def __iter__(self) -> Iterator[dict]:
        shard = current_shard(self.rank, self.world_size, self._resume_batches)
        skip = batches_before(self._resume_batches, shard.worker, shard.num_workers) * self._batch_size
        epoch = 0
        if skip and self.stream.repeat:  # skip whole epochs without reading them when their size is known
            start, stop = shard_range(self.reader.num_episodes, shard.index, shard.count)
            while (size := self.epoch_size(start, stop, epoch)) and size <= skip:
                skip, epoch = skip - size, epoch + 1
        for n, sample in enumerate(self.raw_samples(shard, epoch)):
            if n >= skip:
                yield self.finalize(sample)


def make_dataloader(
    dataset: StreamingDataset,
    batch_size: int,
    collate_fn: Callable[[list[dict]], dict],
    num_workers: int = 2,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> DataLoader:
    """A DataLoader for a streaming dataset with persistent workers.

    Workers use the platform's default start method (fork on Linux: they start in milliseconds). That is safe
    because the read path never touches TensorFlow (see :mod:`wp_training.data.rlds_reader`), even when the parent
    process has imported it to write a dataset.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1 and num_workers ({num_workers}) >= 0")
    extra = dict(persistent_workers=True, prefetch_factor=prefetch_factor)
    return DataLoader(
        dataset, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers, pin_memory=pin_memory,
        **(extra if num_workers > 0 else {}),
    )
