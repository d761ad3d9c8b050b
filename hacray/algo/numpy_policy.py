"""The numpy forward pass of an exported actor: what rollout workers act with, without torch.

The learner exports each actor as a dict of float32 arrays (``networks.export_actor``); the
policy lays each out once per weight version (:func:`actor_layers`) and :func:`actor_forward`
evaluates it (a numpy MLP on a few rows is faster than torch's dispatch).
"""
from __future__ import annotations

import numpy as np

Layers = list[tuple[np.ndarray, np.ndarray]]
"""An exported actor ready to evaluate: (weight transposed to (in, out), C-contiguous; bias)."""


def actor_layers(params: dict[str, np.ndarray]) -> Layers:
    """The exported actor's layers in the layout :func:`actor_forward` multiplies fastest
    (a contiguous (in, out) matrix: ~1.4x faster than a transposed view on batches of 4)."""
    return [(np.ascontiguousarray(params[f"net.{2 * i}.weight"].T), params[f"net.{2 * i}.bias"])
            for i in range(len(params) // 2)]


def actor_forward(layers: Layers, inputs: np.ndarray) -> np.ndarray:
    """Evaluate an exported actor on normalised ``concat(obs, goal)`` rows; returns tanh output."""
    x = inputs
    for i, (weight, bias) in enumerate(layers):
        x = x @ weight
        x += bias
        if i < len(layers) - 1:
            np.maximum(x, 0.0, out=x)
    return np.tanh(x, out=x)
