"""One level's networks, targets and optimisers, and its DDPG step.

``learn`` is one gradient step of a level's critic, then its actor, with a guard against
non-finite losses and gradients in one of two modes:

- *eager*: read the loss and the gradient norm on the host and skip the step when either is
  non-finite (a GPU waits for each read: two syncs per network per update);
- *deferred*: always step, and return the guard as a device tensor. The caller reads the guards
  of many updates at once and, when one failed, restores the level's ``snapshot`` taken before
  them and replays them eagerly, so that both modes leave exactly the same state.
"""
from __future__ import annotations

import copy
from typing import Any, Optional, Union

import torch

from hacray.algo.hierarchy import LevelSpace
from hacray.algo.networks import Actor, Critic
from hacray.algo.normalizer import Normalizer
from hacray.config import LearnerConfig

Guard = Union[bool, torch.Tensor]


def use_fused_adam(device: torch.device) -> bool:
    """Fused Adam (one kernel per step) on CUDA; on CPU the default, as before it existed."""
    return device.type == "cuda"


class Level:
    """One level's networks, targets, optimisers and input scaling."""

    def __init__(self, space: LevelSpace, obs_dim: int, config: LearnerConfig,
                 device: torch.device, hidden: Optional[list[int]] = None):
        self.space = space
        hidden = config.hidden if hidden is None else hidden
        norm = config.layer_norm
        self.actor = Actor(obs_dim, space.goal_dim, space.act_dim, hidden, norm).to(device)
        self.critic = Critic(obs_dim, space.goal_dim, space.act_dim, hidden, norm,
                             config.twin_critics).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.fused = use_fused_adam(device)
        fused = True if self.fused else None
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr,
                                          fused=fused)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr,
                                           fused=fused)
        self.act_centre = torch.as_tensor(space.act_centre, device=device)
        self.act_half = torch.as_tensor(space.act_half, device=device)
        self.goal_norm = Normalizer(space.goal_dim, config.norm_eps, config.norm_clip,
                                    config.obs_clip)
        self._saved: Optional[list[torch.Tensor]] = None
        self._had_state = (False, False)  # the actor's and the critic's optimiser, at snapshot

    # -- snapshot and restore (the deferred guard's way back) ---------------------------------
    def _tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes: weights, targets, then the optimisers' state."""
        nets = (self.actor, self.critic, self.actor_target, self.critic_target)
        out = [p for net in nets for p in net.parameters()]
        for opt in (self.actor_opt, self.critic_opt):
            for group in opt.param_groups:
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    out += [state[k] for k in sorted(state) if isinstance(state[k], torch.Tensor)]
        return out

    def snapshot(self) -> None:
        """Copy the level's state aside (into buffers kept between calls)."""
        tensors = self._tensors()
        if self._saved is None or [t.shape for t in self._saved] != [t.shape for t in tensors]:
            self._saved = [t.detach().clone() for t in tensors]
        else:
            with torch.no_grad():
                torch._foreach_copy_(self._saved, tensors)
        self._had_state = (bool(self.actor_opt.state), bool(self.critic_opt.state))

    @torch.no_grad()
    def restore(self) -> None:
        """Back to the last ``snapshot``: an optimiser that had taken no step by then forgets
        the state it made since (each on its own: a critic may have stepped, its actor not)."""
        assert self._saved is not None, "restore without a snapshot"
        for opt, had_state in zip((self.actor_opt, self.critic_opt), self._had_state):
            if not had_state:
                opt.state.clear()
        torch._foreach_copy_(self._tensors(), self._saved)  # the same tensors as then

    def after_load(self) -> None:
        """Optimiser state loaded from a checkpoint keeps this level's Adam kind (fused or not,
        whatever the saving machine used) and its step counters where that kind wants them."""
        for opt in (self.actor_opt, self.critic_opt):
            for group in opt.param_groups:
                group["fused"], group["foreach"] = (True if self.fused else None), None
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    if "step" in state:
                        state["step"] = state["step"].to(
                            device=p.device if self.fused else "cpu", dtype=torch.float32)

    @torch.no_grad()
    def soft_update(self, polyak: float) -> None:
        for net, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), 1.0 - polyak)


def guarded_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor, net: torch.nn.Module,
                 deferred: bool) -> Guard:
    """Backward and step. Eager: unless the loss or the gradient norm is non-finite (then
    False, nothing changed). Deferred: always, returning that test as a 0-d bool tensor."""
    if not deferred and not torch.isfinite(loss):
        return False
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf"))
    if deferred:
        optimiser.step()
        return torch.isfinite(loss) & torch.isfinite(norm)
    if not torch.isfinite(norm):
        optimiser.zero_grad(set_to_none=True)
        return False
    optimiser.step()
    return True


def learn(level: Level, index: int, batch: dict[str, torch.Tensor],
          norms: tuple[torch.Tensor, ...], config: LearnerConfig, average_targets: bool,
          deferred: bool, want_metrics: bool) -> Optional[tuple[Guard, dict[str, Any]]]:
    """Level ``index``'s critic step, then its actor step, on one batch of raw tensors.

    Returns the guard (True, or a device tensor when deferred) and the metrics (when asked
    for); None when an eager guard stopped it (the rest of the update is not taken)."""
    obs_mean, obs_std, goal_mean, goal_std = norms
    obs = normalise(batch["obs"], obs_mean, obs_std, config)
    next_obs = normalise(batch["next_obs"], obs_mean, obs_std, config)
    goal = normalise(batch["goal"], goal_mean, goal_std, config)
    action = (batch["action"] - level.act_centre) / level.act_half
    with torch.no_grad():
        next_q = level.critic_target.bootstrap(next_obs, goal,
                                               level.actor_target(next_obs, goal))
        target = torch.clamp(batch["reward"] + batch["discount"] * next_q,
                             level.space.q_low, 0.0)
    qs = level.critic.both(obs, goal, action)
    q = qs[0]
    critic_loss = sum(torch.mean((head - target) ** 2) for head in qs)
    critic_ok = guarded_step(level.critic_opt, critic_loss, level.critic, deferred)
    if critic_ok is False:
        return None
    z = level.actor.pre_tanh(obs, goal)
    pi = torch.tanh(z)  # the actor's forward, with its output before the tanh kept
    level.critic.requires_grad_(False)  # the actor's loss needs no critic weight gradients
    try:
        actor_loss = -level.critic(obs, goal, pi).mean()
    finally:
        level.critic.requires_grad_(True)
    l2 = config.action_l2 if index == 0 else config.subgoal_l2  # subgoals: pulls to the box centre
    if l2:
        actor_loss = actor_loss + l2 * torch.mean(pi ** 2)
    if index > 0 and config.subgoal_preact_l2:  # pulls a saturated subgoal actor back
        actor_loss = actor_loss + preact_penalty(z, batch["goal"], level, config)
    actor_ok = guarded_step(level.actor_opt, actor_loss, level.actor, deferred)
    if actor_ok is False:
        return None
    if average_targets:  # a level skipped on that update waits for the next k-th one
        level.soft_update(config.polyak)
    guard = critic_ok & actor_ok if deferred else True
    return guard, (metrics(index, q.detach(), target, critic_loss, actor_loss, level.space.q_low)
                   if want_metrics else {})


PULL_EDGE = 0.95  # a goal pull's target stays inside this share of the subgoal box's half-width


def preact_target(goal: torch.Tensor, centre: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """The pre-tanh output that puts a subgoal at ``goal`` (raw, one column per subgoal
    coordinate) inside the box ``centre`` +- ``half`` (the level's whole action: the values
    a top level sets directly come last), clipped to PULL_EDGE of it; the direct values at 0."""
    sub_dim = goal.shape[1]
    unit = torch.clamp((goal - centre[:sub_dim]) / half[:sub_dim], -PULL_EDGE, PULL_EDGE)
    rest = torch.zeros(goal.shape[0], centre.shape[0] - sub_dim, dtype=goal.dtype,
                       device=goal.device)
    return torch.cat([torch.atanh(unit), rest], dim=1)


def preact_penalty(z: torch.Tensor, goal: torch.Tensor, level: Level,
                   config: LearnerConfig) -> torch.Tensor:
    """``subgoal_preact_l2`` on how far the subgoal actor's pre-tanh output ``z`` is from its
    target (``subgoal_preact_to``), beyond ``subgoal_preact_free``; ``goal`` raw."""
    offset = z
    if config.subgoal_preact_to == "goal":
        sub_dim = level.space.act_dim - level.space.direct_dim
        offset = z - preact_target(goal[:, :sub_dim], level.act_centre, level.act_half)
    excess = torch.clamp(offset.abs() - config.subgoal_preact_free, min=0.0)
    return config.subgoal_preact_l2 * torch.mean(excess ** 2)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              config: LearnerConfig) -> torch.Tensor:
    return torch.clamp((torch.clamp(x, -config.obs_clip, config.obs_clip) - mean) / std,
                       -config.norm_clip, config.norm_clip)


def metrics(i: int, q: torch.Tensor, target: torch.Tensor, critic_loss: torch.Tensor,
            actor_loss: torch.Tensor, q_low: float) -> dict[str, Any]:
    """Level ``i``'s losses, and its predictions on the batch against the clip range
    [q_low, 0] of its targets: no target lies outside it, so predictions outside it are pure
    critic error. 0-d tensors (no device read here), and q_low."""
    q_min, q_max = torch.aminmax(q)
    return {f"level{i}/critic_loss": critic_loss.detach(),
            f"level{i}/actor_loss": actor_loss.detach(),
            f"level{i}/q_mean": q.mean(), f"level{i}/q_min": q_min,
            f"level{i}/target_mean": target.mean(),
            f"diag/level{i}_q_max": q_max,
            f"diag/level{i}_q_below_lower_frac": (q < q_low).float().mean(),
            f"diag/level{i}_q_above_zero_frac": (q > 0.0).float().mean(),
            f"diag/level{i}_q_lower_bound": q_low}
