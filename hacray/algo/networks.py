"""Goal-conditioned actor and critic MLPs, and a numpy forward pass for rollout workers.

Workers never see torch: the learner exports each actor as a dict of float32 arrays, the
policy lays each out once per weight version (:func:`actor_layers`) and :func:`actor_forward`
evaluates it (a numpy MLP on a few rows is faster than torch's dispatch).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """pi(obs, goal) -> action in [-1, 1]^act_dim (normalised inputs in, tanh out)."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp(obs_dim + goal_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.cat([obs, goal], dim=-1)))


class Critic(nn.Module):
    """Q(obs, goal, action) with the action scaled to [-1, 1]."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp(obs_dim + goal_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor
                ) -> torch.Tensor:
        return self.net(torch.cat([obs, goal, action], dim=-1)).squeeze(-1)


def export_actor(actor: Actor) -> dict[str, np.ndarray]:
    """The actor's parameters as float32 numpy arrays (on the CPU)."""
    return {name: p.detach().to("cpu", torch.float32).numpy().copy()
            for name, p in actor.state_dict().items()}


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
