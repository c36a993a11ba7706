"""An endless, resumable stream of collated batches for one rank.

Each epoch rebuilds the task's dataset for ``DataShard(rank, world, seed, epoch)`` and reads it through a
DataLoader whose own generator is seeded from ``(seed, rank, epoch)`` (so worker seeds never consume the global
torch RNG that the model's noise uses). The position is ``(epoch, batches consumed in that epoch)``; resuming
rebuilds that epoch and skips the consumed batches, which reproduces the stream exactly because the dataset is a
pure function of its shard (see :class:`~wp_training.tasks.interface.DataShard`). A dataset with a
``resume(consumed_batches, batch_size)`` method fast-forwards itself (e.g. skipping samples before decoding
images); otherwise the consumed batches are read and dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from wp_training.engine.train_config import LoaderSettings
from wp_training.tasks.interface import DataShard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    batches: int = 0  # batches already consumed in ``epoch``


class BatchStream:
    """``next(stream)`` -> collated batch dict; rolls over to the next epoch when the shard is exhausted."""

    def __init__(
        self,
        make_dataset: Callable[[DataShard], Iterable[dict]],
        batch_size: int,
        settings: LoaderSettings,
        shard: DataShard,
        collate: Callable[[list], Any] | None = None,
        position: DataPosition = DataPosition(),
        pin_memory: bool = False,
        show_progress: bool = False,
    ):
        self._make_dataset = make_dataset
        self._batch_size = batch_size
        self._settings = settings
        self._shard = shard
        self._collate = collate or default_collate
        self._pin_memory = pin_memory and settings.pin_memory
        self._epoch = position.epoch
        self._batches = 0
        self._iter = self._open_epoch(resume_batches=position.batches, show_progress=show_progress)

    @property
    def position(self) -> DataPosition:
        return DataPosition(self._epoch, self._batches)

    def _loader_seed(self) -> int:
        seq = np.random.SeedSequence([self._shard.seed, self._shard.rank, self._epoch])
        return int(seq.generate_state(1, dtype=np.uint64)[0] % 2**63)

    def _open_epoch(self, resume_batches: int = 0, show_progress: bool = False) -> Iterator:
        """Iterator over this epoch's batches, positioned after ``resume_batches`` already-consumed ones."""
        shard = DataShard(self._shard.rank, self._shard.world_size, self._shard.seed, self._epoch)
        dataset = self._make_dataset(shard)
        fast_forward = resume_batches > 0 and hasattr(dataset, "resume")
        if fast_forward:
            dataset.resume(resume_batches, self._batch_size)  # skips raw samples before decoding them
        workers = self._settings.num_workers
        loader = DataLoader(
            dataset,
            batch_size=self._batch_size,
            collate_fn=self._collate,
            num_workers=workers,
            prefetch_factor=self._settings.prefetch_factor if workers > 0 else None,
            pin_memory=self._pin_memory,
            drop_last=True,
            generator=torch.Generator().manual_seed(self._loader_seed()),
        )
        iterator = iter(loader)
        self._batches = resume_batches if fast_forward else 0
        if resume_batches and not fast_forward:
            log.info("resuming data stream: reading past %d consumed batches of epoch %d", resume_batches, self._epoch)
            for _ in tqdm(range(resume_batches), desc="fast-forward data", disable=not show_progress):
                next(iterator)
                self._batches += 1
        return iterator

    def __iter__(self):
        return self

    def __next__(self) -> Any:
        while True:
            try:
                batch = next(self._iter)
                break
            except StopIteration:
                if self._batches == 0:
                    raise RuntimeError(
                        f"dataset shard {self._shard.rank}/{self._shard.world_size} produced no full batch in epoch "
                        f"{self._epoch} (fewer than batch_size={self._batch_size} samples?)"
                    ) from None
                self._epoch += 1
                self._iter = self._open_epoch()
        self._batches += 1
        return batch


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested dict/list) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
