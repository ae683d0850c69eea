"""Preparing sharded training sets: the per-pair stages, the shard format, the preview."""
