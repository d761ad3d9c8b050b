"""Goal-conditioned actor and critic MLPs (torch: the learner's side).

Workers never see torch: the learner exports each actor as a dict of float32 arrays
(:func:`export_actor`), which :mod:`hacray.algo.numpy_policy` evaluates.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(inputs: int, hidden: list[int], outputs: int, layer_norm: bool = False
        ) -> nn.Sequential:
    """Linear layers with ReLU between them; with ``layer_norm``, each hidden Linear is followed
    by a LayerNorm before its ReLU (spitis/mrl's Fetch networks)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), *([nn.LayerNorm(width)] if layer_norm else []),
                   nn.ReLU()]
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """pi(obs, goal) -> action in [-1, 1]^act_dim (normalised inputs in, tanh out)."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hidden: list[int],
                 layer_norm: bool = False):
        super().__init__()
        self.net = mlp(obs_dim + goal_dim, hidden, act_dim, layer_norm)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre_tanh(obs, goal))

    def pre_tanh(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The output before its tanh."""
        return self.net(torch.cat([obs, goal], dim=-1))


class Critic(nn.Module):
    """Q(obs, goal, action) with the action scaled to [-1, 1]. With ``twin``, a second
    network of the same shape beside it (TD3's clipped double Q, Fujimoto et al. 2018): both
    learn the same targets, which bootstrap from the smaller of the two; the actor climbs the
    first alone (``forward``)."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hidden: list[int],
                 layer_norm: bool = False, twin: bool = False):
        super().__init__()
        self.net = mlp(obs_dim + goal_dim + act_dim, hidden, 1, layer_norm)
        self.twin = mlp(obs_dim + goal_dim + act_dim, hidden, 1, layer_norm) if twin else None

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor
                ) -> torch.Tensor:
        return self.net(torch.cat([obs, goal, action], dim=-1)).squeeze(-1)

    def both(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor
             ) -> tuple[torch.Tensor, ...]:
        """Every network's Q: (first,) or (first, twin)."""
        rows = torch.cat([obs, goal, action], dim=-1)
        nets = (self.net,) if self.twin is None else (self.net, self.twin)
        return tuple(net(rows).squeeze(-1) for net in nets)

    def bootstrap(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor
                  ) -> torch.Tensor:
        """The value a target bootstraps from: Q, or with a twin the smaller of the two."""
        values = self.both(obs, goal, action)
        return values[0] if len(values) == 1 else torch.minimum(*values)


def export_actor(actor: Actor) -> dict[str, np.ndarray]:
    """The actor's parameters as float32 numpy arrays (on the CPU)."""
    return {name: p.detach().to("cpu", torch.float32).numpy().copy()
            for name, p in actor.state_dict().items()}
