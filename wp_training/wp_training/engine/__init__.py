"""The generic training engine every mode runs on: configs, the loop, the per-rank batch stream, AdamW and schedule,
DDP / FSDP, LoRA and freezing, checkpoints and exact resume, metrics, the frozen-vision feature cache, the memory
planner and checkpoint selection in simulation."""
