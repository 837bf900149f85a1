"""Data-parallel training on this machine's CPU cores (or GPUs), with normcore.SyncBatchNorm."""
