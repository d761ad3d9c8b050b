"""One root seed, split into independent named streams (never a global RNG).

Each stream is ``SeedSequence(root, spawn_key=(stream_id, *index))``: deterministic, independent
across names and indices, and the same in one process or across a cluster.
"""
from __future__ import annotations

import numpy as np

STREAMS = {"learner": 0, "replay": 1, "eval": 2, "env": 3}


def seed_sequence(root: int, name: str, *index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(root, spawn_key=(STREAMS[name], *index))


def rng(root: int, name: str, *index: int) -> np.random.Generator:
    """Generator of stream ``name`` (e.g. ``rng(seed, "env", worker_id, env_index)``)."""
    return np.random.default_rng(seed_sequence(root, name, *index))


def int_seed(root: int, name: str, *index: int) -> int:
    """A 31-bit integer seed from a stream (for torch.manual_seed and the like)."""
    return int(seed_sequence(root, name, *index).generate_state(1)[0] & 0x7FFFFFFF)


def eval_env_seeds(root: int, episodes: int) -> list[int]:
    """Fixed env seeds of the evaluation episodes: the same at every evaluation of a run."""
    return [int(s) for s in seed_sequence(root, "eval").generate_state(episodes)]
