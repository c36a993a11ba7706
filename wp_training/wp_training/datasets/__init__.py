"""Training samples from RLDS: the AE and VLM datasets, image collation and training-only augmentation, and the
sharded, shuffled, resumable sample stream both datasets read through."""
