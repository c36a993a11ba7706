"""Streaming pieces: the early-yield shuffle buffer, sharding, chunk order and resume arithmetic."""

import numpy as np
import pytest

from wp_training.datasets.sample_stream import (
    StreamConfig,
    batches_before,
    chunk_order,
    current_shard,
    shard_range,
    shuffle_buffer,
)


class Source:
    """An item stream that records how many items were pulled."""

    def __init__(self, n):
        self.n, self.pulled = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.pulled += 1
            yield i


def test_shuffle_buffer_yields_early_and_emits_everything_once():
    src = Source(1000)
    it = shuffle_buffer(src, capacity=200, warmup=8, rng=np.random.default_rng(0))
    first = next(it)
    assert src.pulled == 8 and 0 <= first < 8  # first sample after 8 items, not after a full buffer of 200
    rest = list(it)
    assert sorted([first] + rest) == list(range(1000))
    out = [first] + rest
    assert all(item < pos + 200 + 1 for pos, item in enumerate(out))  # nothing waits for more than the capacity
    assert out != sorted(out)


def test_shuffle_buffer_is_seeded():
    run = lambda seed: list(shuffle_buffer(range(300), 50, 4, np.random.default_rng(seed)))  # noqa: E731
    assert run(1) == run(1) and run(1) != run(2)


def test_shard_ranges_partition_the_episodes():
    for n, shards in ((10, 3), (7, 7), (100, 8)):
        ranges = [shard_range(n, s, shards) for s in range(shards)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert [shard_range(2, s, 4) for s in range(4)] == [(0, 1), (1, 2), (0, 1), (1, 2)]  # fewer episodes: shared
    with pytest.raises(ValueError, match="no episodes"):
        shard_range(0, 0, 1)


def test_chunk_order_and_main_process_shard():
    order = chunk_order(10, 35, 10, np.random.default_rng(3))
    assert sorted(order) == [(10, 20), (20, 30), (30, 35)]
    shard = current_shard(rank=1, world_size=2)
    assert (shard.index, shard.count, shard.worker, shard.num_workers) == (1, 2, 0, 1)


def test_resume_arithmetic_matches_round_robin():
    # DataLoader takes batch 0 from worker 0, batch 1 from worker 1, batch 2 from worker 0, ...
    consumed = 7
    produced = [sum(1 for b in range(consumed) if b % 3 == w) for w in range(3)]
    assert [batches_before(consumed, w, 3) for w in range(3)] == produced == [3, 2, 2]
    assert batches_before(0, 1, 2) == 0


def test_stream_config_validation():
    with pytest.raises(ValueError, match=r"shuffle_warmup must be in 1..shuffle_buffer \(10\), got 20"):
        StreamConfig(shuffle_buffer=10, shuffle_warmup=20)
    with pytest.raises(ValueError, match="episode_chunk must be >= 1"):
        StreamConfig(episode_chunk=0)


def test_resumed_workers_take_over_the_due_stream(monkeypatch):
    from types import SimpleNamespace

    import wp_training.datasets.sample_stream as sample_stream

    monkeypatch.setattr(sample_stream, "get_worker_info", lambda: SimpleNamespace(id=0, num_workers=2))
    # after 3 batches with 2 workers, batch 3 was due from worker 1: the resumed loader's worker 0 plays worker 1
    shard = current_shard(rank=1, world_size=2, consumed_batches=3)
    assert (shard.worker, shard.index, shard.count) == (1, 3, 4)
    assert current_shard(rank=1, world_size=2, consumed_batches=4).worker == 0
