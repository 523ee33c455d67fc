"""The files of a run directory, by name: one place, so that every command agrees on them."""

from __future__ import annotations

__all__ = ["RUN_CONFIG", "CHECKPOINT", "ARCH", "SUMMARY", "WEIGHTS", "LATENCY_TABLE"]

RUN_CONFIG = "config.yaml"  #: the config the run ran with
CHECKPOINT = "checkpoint.pt"  #: everything needed to resume it
ARCH = "arch.yaml"  #: what a search found (or a pruning kept), as a complete config
SUMMARY = "summary.json"  #: final metrics and what the run ran on, once it has finished
WEIGHTS = "weights.pt"  #: a trained (or pruned) network's weights
LATENCY_TABLE = "latency.json"  #: the measured times of network parts (search.cost: latency)
