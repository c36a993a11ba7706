"""The training loop on the toy task (in-process, CPU): learning, accumulation, exact resume, LoRA/freezing,
gradient checkpointing, bf16, bad input and misuse of run directories."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import toy_task
from wp_policy.config_io import ConfigError
from wp_training.engine.batch_stream import BatchStream, DataPosition
from wp_training.engine.metrics_log import read_jsonl
from wp_training.engine.model_setup import build_training_model
from wp_training.engine.train_config import LoaderSettings
from wp_training.engine.train_state import CheckpointError, list_checkpoints, load_model_weights
from wp_training.engine.trainer import accumulate_gradients, train
from wp_training.tasks.interface import DataShard

TASK = toy_task.TASK


def _final_state(result) -> dict:
    return load_model_weights(result.checkpoint)


def test_thirty_steps_lower_the_loss_and_export_loads(toy_config):
    cfg = toy_config(num_steps=30, checkpoint={"every_steps": 10}, log={"every_steps": 5})
    result = train(cfg, TASK)
    steps, summaries = read_jsonl(cfg.run_dir / "metrics.jsonl")
    losses = [r["train/loss"] for r in steps]
    assert [r["step"] for r in steps] == [5, 10, 15, 20, 25, 30]
    assert losses[-1] < 0.6 * losses[0], losses
    record = steps[-1]
    for key in ("train/lr", "train/grad_norm", "train/steps_per_sec", "train/samples_per_sec", "train/peak_mem_gib",
                "train/mae"):
        assert np.isfinite(record[key]) and record[key] > 0, key
    assert summaries[0]["summary"]["trainable_params"] == summaries[0]["summary"]["total_params"] > 0
    assert list((cfg.run_dir / "tb").glob("events.out.tfevents.*"))
    exported = toy_task.ToyModel.from_pretrained(result.export_dir)
    for name, tensor in exported.state_dict().items():
        assert torch.equal(tensor, _final_state(result)[name]), name


def test_accumulation_matches_the_large_batch_gradient(toy_config):
    """batch 4 x accum 2 gives the gradient of batch 8 (same samples, noise off)."""
    cfg = toy_config(model={"noise_std": 0.0})
    model_cfg, data_cfg = TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    stream8 = BatchStream(lambda s: TASK.build_dataset(model_cfg, data_cfg, s), 8, cfg.loader, DataShard(0, 1, 0, 0))
    batch8 = next(stream8)
    halves = [{k: v[:4] for k, v in batch8.items()}, {k: v[4:] for k, v in batch8.items()}]
    grads = []
    for batches, accum in (([batch8], 1), (halves, 2)):
        torch.manual_seed(0)
        model = TASK.build_model(model_cfg)
        loss, _ = accumulate_gradients(model, iter(batches), accum, torch.device("cpu"), "fp32")
        grads.append(([p.grad.clone() for p in model.parameters()], loss))
    for g8, g44 in zip(grads[0][0], grads[1][0]):
        torch.testing.assert_close(g44, g8, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[1][1], grads[0][1])


def test_accumulated_run_matches_large_batch_run(toy_config):
    common = {"num_steps": 5, "model": {"noise_std": 0.0}, "checkpoint": {"every_steps": 5}}
    big = train(toy_config("big", batch_size=8, grad_accum=1, **common), TASK)
    small = train(toy_config("small", batch_size=4, grad_accum=2, **common), TASK)
    for name, tensor in _final_state(big).items():
        torch.testing.assert_close(_final_state(small)[name], tensor, rtol=1e-5, atol=1e-6)


class _Crash(Exception):
    pass


def _crashing_task(after_samples: int):
    counter = [0]

    class Crashing(toy_task.ToyDataset):
        def __iter__(self):
            for item in super().__iter__():
                counter[0] += 1
                if counter[0] > after_samples:
                    raise _Crash(f"simulated crash after {after_samples} samples")
                yield item

    return dataclasses.replace(TASK, build_dataset=lambda m, d, shard: Crashing(d, shard))


def test_crash_and_resume_is_bit_exact(toy_config):
    """A run that dies mid-step (after checkpoint 8, in step 10, mid-accumulation) and resumes ends bit-identical
    to the uninterrupted run: weights, optimizer moments, data position (epochs roll over) and noise RNG."""
    extra = {"num_steps": 14, "batch_size": 6, "grad_accum": 2, "data": {"num_samples": 40}}
    reference = train(toy_config("reference", **extra), TASK)
    cfg = toy_config("crashed", **extra)
    with pytest.raises(_Crash):
        train(cfg, _crashing_task(after_samples=9 * 12 + 6 + 3))
    assert [s for s, _ in list_checkpoints(cfg.run_dir / "checkpoints")] == [4, 8]
    torch.manual_seed(12345)  # the resumed process must not depend on the RNG state it starts with
    resumed = train(cfg, TASK, resume=True)
    assert resumed.step == reference.step == 14
    for name in ("model.safetensors", "optimizer.safetensors"):
        ref, got = load_file(str(reference.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert ref.keys() == got.keys()
        for key in ref:
            assert torch.equal(ref[key], got[key]), f"{name}:{key}"
    steps, _ = read_jsonl(cfg.run_dir / "metrics.jsonl")
    assert [r["step"] for r in steps] == list(range(2, 15, 2))  # logged before the crash past step 8: dropped
    ref_steps, _ = read_jsonl(reference.checkpoint.parent.parent / "metrics.jsonl")
    assert [r["train/loss"] for r in steps] == [r["train/loss"] for r in ref_steps]


def test_stream_position_resumes_exactly_with_workers():
    cfg = toy_task.ToyDataConfig(num_samples=30)
    make = lambda shard: toy_task.ToyDataset(cfg, shard)  # noqa: E731
    loader = LoaderSettings(num_workers=2, prefetch_factor=2, pin_memory=False)
    shard = DataShard(rank=1, world_size=2, seed=5, epoch=0)
    stream = BatchStream(make, 4, loader, shard)
    seen = [next(stream)["index"].tolist() for _ in range(5)]  # 15 samples per rank -> 3 batches: crosses an epoch
    position = stream.position
    assert position.epoch == 1 and position.batches == 2
    expected = [next(stream)["index"].tolist() for _ in range(4)]
    again = BatchStream(make, 4, loader, shard, position=position)
    assert [next(again)["index"].tolist() for _ in range(4)] == expected
    first_epoch = {i for b in seen[:3] for i in b}  # rank 1 of 2 owns every other index of the shuffled order
    assert len(first_epoch) == 12 and first_epoch <= set(np.random.default_rng([5, 0]).permutation(30)[1::2].tolist())


def test_stream_uses_a_dataset_fast_forward_hook():
    """A dataset with resume(consumed_batches, batch_size) skips by itself; the batches still line up."""
    cfg = toy_task.ToyDataConfig(num_samples=30)
    calls = []

    class Resumable(toy_task.ToyDataset):
        skip = 0

        def resume(self, consumed_batches, batch_size):
            calls.append((consumed_batches, batch_size))
            self.skip = consumed_batches * batch_size

        def __iter__(self):
            items = super().__iter__()
            for _ in range(self.skip):
                next(items)
            yield from items

    make = lambda shard: Resumable(cfg, shard)  # noqa: E731
    loader = LoaderSettings(num_workers=0, pin_memory=False)
    stream = BatchStream(make, 4, loader, DataShard(0, 1, 5, 0))
    [next(stream) for _ in range(3)]
    expected = [next(stream)["index"].tolist() for _ in range(3)]
    again = BatchStream(make, 4, loader, DataShard(0, 1, 5, 0), position=DataPosition(0, 3))
    assert [next(again)["index"].tolist() for _ in range(3)] == expected and calls == [(3, 4)]


def test_lora_trains_adapters_and_export_merges(toy_config):
    cfg = toy_config(lora={"enabled": True, "rank": 4, "alpha": 8.0}, num_steps=6)
    model_cfg, _ = TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    torch.manual_seed(cfg.seed)
    initial, _ = build_training_model(TASK, cfg, model_cfg, load_pretrained=False)
    trainable = {n for n, p in initial.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    result = train(cfg, TASK)
    final = _final_state(result)
    base = {k: v for k, v in initial.state_dict().items() if "base_layer" in k or k.startswith("embed")}
    assert all(torch.equal(final[k], v) for k, v in base.items())  # frozen base weights untouched
    assert not torch.equal(final["head.weight"], initial.state_dict()["head.weight"])
    exported = toy_task.ToyModel.from_pretrained(result.export_dir)  # plain keys: LoRA merged
    lora_model, _ = build_training_model(TASK, cfg, model_cfg, load_pretrained=False)
    lora_model.load_state_dict(final)
    batch = {"x": torch.randn(5, 8), "y": torch.zeros(5)}
    exported.eval(), lora_model.eval()
    torch.testing.assert_close(exported(batch)[0], lora_model(batch)[0], rtol=1e-5, atol=1e-6)


def test_freeze_groups_and_bad_patterns(toy_config):
    cfg = toy_config(freeze=["embed", "blocks.0.*"], num_steps=4)
    model_cfg, _ = TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    torch.manual_seed(cfg.seed)
    initial = TASK.build_model(model_cfg).state_dict()
    final = _final_state(train(cfg, TASK))
    for key, value in initial.items():
        frozen = key.startswith(("embed.", "blocks.0."))
        assert torch.equal(final[key], value) == frozen, key
    with pytest.raises(ConfigError, match="freeze: 'visoin' matches no parameter"):
        train(toy_config("typo", freeze=["visoin"]), TASK)


def test_gradient_checkpointing_is_real_and_equivalent(toy_config):
    cfg = toy_config(gradient_checkpointing=True, model={"noise_std": 0.0})
    model_cfg, _ = TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    batch = {"x": torch.randn(6, 8), "y": torch.randn(6)}
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model, _ = build_training_model(TASK, dataclasses.replace(cfg, gradient_checkpointing=ckpt), model_cfg, False)
        accumulate_gradients(model, iter([batch]), 1, torch.device("cpu"), "fp32")
        grads.append([p.grad for p in model.parameters()])
        assert (model.checkpoint_calls > 0) == ckpt
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_parameters_the_model_froze_never_train(toy_config):
    class WithUnused(toy_task.ToyModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.unused = torch.nn.Linear(3, 3)  # never read by forward: the model freezes it itself
            self.unused.requires_grad_(False)

    task = dataclasses.replace(TASK, build_model=WithUnused)
    lora = {"enabled": True, "rank": 2, "targets": ["blocks.*.fc1", "unused"], "also_train": ["unused.*", "head"]}
    for extra in ({}, {"lora": lora}):  # with LoRA: no adapter on a weight the model never reads either
        cfg = toy_config(**extra)
        model, _ = build_training_model(task, cfg, task.parse_configs(cfg.model, cfg.data, "<t>")[0], False)
        assert not any(p.requires_grad for p in model.unused.parameters())
        assert model.head.weight.requires_grad


def test_pretrained_weights_are_loaded(toy_config, tmp_path):
    donor = toy_task.ToyModel(toy_task.ToyModelConfig(hidden=16))
    donor.save_pretrained(tmp_path / "pretrained")
    cfg = toy_config(pretrained_path=str(tmp_path / "pretrained"))
    model_cfg, _ = TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    model, _ = build_training_model(TASK, cfg, model_cfg, load_pretrained=True)
    for key, value in donor.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_bf16_precision_runs_on_cpu(toy_config):
    result = train(toy_config(precision="bf16", num_steps=4), TASK)
    assert all(t.dtype == torch.bfloat16 for t in _final_state(result).values())
    assert np.isfinite(result.last_loss)


def test_nan_data_stops_with_the_step(toy_config):
    class NanData(toy_task.ToyDataset):
        def sample(self, index):
            item = super().sample(index)
            item["y"] = np.float32("nan") if index == 7 else item["y"]
            return item

    task = dataclasses.replace(TASK, build_dataset=lambda m, d, shard: NanData(d, shard))
    with pytest.raises(FloatingPointError, match=r"step \d+: gradient norm is nan"):
        train(toy_config(data={"num_samples": 16}), task)


def test_run_directory_misuse(toy_config):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        train(toy_config("empty"), TASK, resume=True)
    cfg = toy_config("used", num_steps=4)
    train(cfg, TASK)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        train(cfg, TASK)
    with pytest.raises(CheckpointError, match="batch_size: checkpoint 8 vs config 4"):
        train(toy_config("used", num_steps=8, batch_size=4), TASK, resume=True)


def test_empty_shard_is_an_error(toy_config):
    with pytest.raises(RuntimeError, match="produced no full batch"):
        train(toy_config(data={"num_samples": 5}), TASK)


def test_fsdp_units_skip_tied_weights_and_nest_innermost_first():
    from wp_training.engine.distributed import fsdp_unit_modules

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.layers = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
                                              for _ in range(2))
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

    model = Tied()
    assert fsdp_unit_modules(model) == [model.layers[1], model.layers[0]]
    units = fsdp_unit_modules(model, ("Linear", "Sequential"))
    assert model.head not in units  # tied to the embedding: stays in the root unit
    assert units.index(model.layers[0][0]) < units.index(model.layers[0])  # children before parents
