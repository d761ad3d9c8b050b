"""The numpy forward pass of an exported actor: what rollout workers act with, without torch.

The learner exports each actor as a dict of float32 arrays (``networks.export_actor``); the
policy lays each out once per weight version (:func:`actor_layers`) and :func:`actor_forward`
evaluates it (a numpy MLP on a few rows is faster than torch's dispatch).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

Norm = Optional[tuple[np.ndarray, np.ndarray]]
"""A hidden layer's LayerNorm (scale, shift), or None where the network has none."""
Layers = list[tuple[np.ndarray, np.ndarray, Norm]]
"""An exported actor ready to evaluate: per Linear layer, its weight transposed to (in, out),
C-contiguous; its bias; the LayerNorm that follows it, if any."""

LAYER_NORM_EPS = 1e-5
"""torch.nn.LayerNorm's default eps, which the learner's networks use."""


def actor_layers(params: dict[str, np.ndarray]) -> Layers:
    """The exported actor's layers in the layout :func:`actor_forward` multiplies fastest
    (a contiguous (in, out) matrix: ~1.4x faster than a transposed view on batches of 4).
    A module with a 2-D weight is a Linear layer, one with a 1-D weight the LayerNorm after
    the Linear before it."""
    modules = sorted({int(name.split(".")[1]) for name in params})
    layers: Layers = []
    for index in modules:
        weight, bias = params[f"net.{index}.weight"], params[f"net.{index}.bias"]
        if weight.ndim == 2:
            layers.append((np.ascontiguousarray(weight.T), bias, None))
        else:
            matrix, linear_bias, _ = layers[-1]
            layers[-1] = (matrix, linear_bias, (weight, bias))
    return layers


def actor_forward(layers: Layers, inputs: np.ndarray) -> np.ndarray:
    """Evaluate an exported actor on normalised ``concat(obs, goal)`` rows; returns tanh output."""
    x = inputs
    for i, (weight, bias, norm) in enumerate(layers):
        x = x @ weight
        x += bias
        if norm is not None:
            x -= x.mean(axis=-1, keepdims=True)
            x /= np.sqrt((x * x).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
            x *= norm[0]
            x += norm[1]
        if i < len(layers) - 1:
            np.maximum(x, 0.0, out=x)
    return np.tanh(x, out=x)
