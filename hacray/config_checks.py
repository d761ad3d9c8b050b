"""Range and consistency checks of a run configuration that types alone cannot express
(``config.load_config`` runs them; each failure is one ConfigError that names the key)."""
from __future__ import annotations

import math
import re
from typing import Any

from hacray.errors import ConfigError

RELABEL_SCHEMES = ("hac", "future", "final", "episode", "none")
SAMPLE_TIME_SCHEMES = ("hac", "future", "final")  # replay.her_at_sample draws these
GRASP_PLACES = ("start", "table")  # env.grasp_place
_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def validate(config: Any) -> None:
    """Range and consistency checks of a ``hacray.config.Config`` (typed ``Any``: config.py
    imports this module, not the other way round)."""
    agent, learner, replay, train = config.agent, config.learner, config.replay, config.train
    checks = [
        (agent.levels >= 1, "agent.levels must be >= 1"),
        (len(agent.horizons) == agent.levels,
         f"agent.horizons needs one entry per level ({agent.levels}), got {len(agent.horizons)}"),
        (all(h >= 1 for h in agent.horizons), "agent.horizons entries must be >= 1"),
        (not replay.her_at_sample or {agent.relabel, agent.top_relabel or agent.relabel}
         <= set(SAMPLE_TIME_SCHEMES),
         f"replay.her_at_sample needs agent.relabel and agent.top_relabel among "
         f"{', '.join(SAMPLE_TIME_SCHEMES)}"),
        (not replay.her_at_sample or agent.relabel_k >= 1,
         "replay.her_at_sample needs agent.relabel_k >= 1"),
        (0.0 <= replay.her_actual <= 1.0, "replay.her_actual must be in [0, 1]"),
        (replay.her_actual == 0.0 or replay.her_at_sample,
         "replay.her_actual needs replay.her_at_sample: true"),
        (agent.relabel in RELABEL_SCHEMES,
         f"agent.relabel must be one of {', '.join(RELABEL_SCHEMES)}, got {agent.relabel!r}"),
        (agent.top_relabel in (None, *RELABEL_SCHEMES),
         f"agent.top_relabel must be one of {', '.join(RELABEL_SCHEMES)}, "
         f"got {agent.top_relabel!r}"),
        (agent.relabel_k >= 0, "agent.relabel_k must be >= 0"),
        (agent.hold_radius is None or (agent.hold_radius > 0 and agent.hold_at_goal),
         "agent.hold_radius needs agent.hold_at_goal and must be > 0"),
        (not agent.hold_anchored or (agent.levels >= 2 and agent.hold_at_goal),
         "agent.hold_anchored needs agent.levels >= 2 and agent.hold_at_goal (a flat agent holds "
         "with the zero action)"),
        (not agent.lower_sees_goal or agent.levels >= 2,
         "agent.lower_sees_goal needs agent.levels >= 2 (a flat agent sees the goal already)"),
        (agent.subgoal_offset is None or all(w > 0 for w in agent.subgoal_offset),
         "agent.subgoal_offset entries must be > 0"),
        (agent.subgoal_reach is None or all(w > 0 for w in agent.subgoal_reach),
         "agent.subgoal_reach entries must be > 0"),
        (agent.subgoal_reach is None or agent.subgoal_offset is None,
         "agent.subgoal_reach and agent.subgoal_offset exclude each other (relative subgoals "
         "are bounded by their offset box already)"),
        (0.0 <= agent.subgoal_test_prob <= 1.0, "agent.subgoal_test_prob must be in [0, 1]"),
        (0.0 <= agent.random_eps <= 1.0, "agent.random_eps must be in [0, 1]"),
        (agent.noise_std >= 0.0, "agent.noise_std must be >= 0"),
        (agent.level_random_eps is None or len(agent.level_random_eps) == agent.levels,
         f"agent.level_random_eps needs one entry per level ({agent.levels})"),
        (agent.level_random_eps is None or all(0.0 <= e <= 1.0 for e in agent.level_random_eps),
         "agent.level_random_eps entries must be in [0, 1]"),
        (agent.level_noise_std is None or len(agent.level_noise_std) == agent.levels,
         f"agent.level_noise_std needs one entry per level ({agent.levels})"),
        (agent.level_noise_std is None or all(n >= 0.0 for n in agent.level_noise_std),
         "agent.level_noise_std entries must be >= 0"),
        (0.0 <= agent.test_top_noise <= 1.0, "agent.test_top_noise must be in [0, 1]"),
        (0.0 < agent.level0_speed <= 1.0, "agent.level0_speed must be in (0, 1]"),
        (not agent.top_action_indices or agent.levels >= 2,
         "agent.top_action_indices needs agent.levels >= 2 (a flat agent sets every action)"),
        (not agent.top_action_indices or (min(agent.top_action_indices) >= 0 and len(
            set(agent.top_action_indices)) == len(agent.top_action_indices)),
         "agent.top_action_indices must be distinct indices >= 0"),
        (not agent.top_time_aware or (agent.levels >= 2 and agent.top_until_episode_end),
         "agent.top_time_aware needs agent.levels >= 2 and agent.top_until_episode_end (a "
         "capped level's attempts are HAC's per-attempt steps)"),
        (not (agent.top_time_aware and replay.her_at_sample),
         "agent.top_time_aware does not work with replay.her_at_sample yet (its rewards are "
         "recomputed per row at sample time, without the attempts' lengths)"),
        (0.0 < learner.gamma < 1.0, "learner.gamma must be in (0, 1)"),
        (0.0 <= learner.polyak < 1.0, "learner.polyak must be in [0, 1)"),
        (learner.action_l2 >= 0 and learner.subgoal_l2 >= 0 and learner.subgoal_preact_l2 >= 0,
         "learner.action_l2, learner.subgoal_l2 and learner.subgoal_preact_l2 must be >= 0"),
        (learner.subgoal_preact_to in ("centre", "goal"),
         "learner.subgoal_preact_to must be centre or goal"),
        (learner.subgoal_preact_free >= 0, "learner.subgoal_preact_free must be >= 0"),
        (learner.subgoal_preact_to == "centre" or agent.subgoal_offset is None,
         "learner.subgoal_preact_to goal needs absolute subgoals (no agent.subgoal_offset)"),
        (learner.batch_size >= 1, "learner.batch_size must be >= 1"),
        (learner.actor_lr > 0 and learner.critic_lr > 0, "learner.*_lr must be > 0"),
        (len(learner.hidden) >= 1 and all(h > 0 for h in learner.hidden),
         "learner.hidden must list positive layer sizes"),
        (learner.top_hidden is None
         or (len(learner.top_hidden) >= 1 and all(h > 0 for h in learner.top_hidden)),
         "learner.top_hidden must list positive layer sizes"),
        (learner.top_hidden is None or agent.levels >= 2,
         "learner.top_hidden needs agent.levels >= 2 (one level is trained with learner.hidden)"),
        (learner.device in ("auto", "cpu", "cuda"), "learner.device must be auto, cpu or cuda"),
        (learner.torch_threads >= 1, "learner.torch_threads must be >= 1"),
        (learner.updates_per_call >= 1, "learner.updates_per_call must be >= 1"),
        (learner.level_update_every is None or len(learner.level_update_every) == agent.levels,
         f"learner.level_update_every needs one entry per level ({agent.levels})"),
        (learner.level_update_every is None or all(k >= 1 for k in learner.level_update_every),
         "learner.level_update_every entries must be >= 1"),
        (learner.level_threads >= 0, "learner.level_threads must be >= 0 (0: one per level)"),
        (replay.capacity >= learner.batch_size, "replay.capacity must be >= learner.batch_size"),
        (replay.min_size >= 1, "replay.min_size must be >= 1"),
        (replay.lift_priority >= 0, "replay.lift_priority must be >= 0 (0: uniform sampling)"),
        (replay.lift_full > 0, "replay.lift_full must be > 0"),
        (replay.lift_index >= 0, "replay.lift_index must be >= 0"),
        (replay.updates_per_env_step > 0, "replay.updates_per_env_step must be > 0"),
        (replay.samples_per_env_step is None or replay.samples_per_env_step > 0,
         "replay.samples_per_env_step must be > 0"),
        (replay.tolerance >= 1, "replay.tolerance must be >= 1"),
        (train.max_env_steps >= 1, "train.max_env_steps must be >= 1"),
        (train.eval_every >= 1, "train.eval_every must be >= 1"),
        (train.eval_episodes >= 1, "train.eval_episodes must be >= 1"),
        (train.episodes_per_cycle >= 1, "train.episodes_per_cycle must be >= 1"),
        (train.checkpoint_keep >= 1, "train.checkpoint_keep must be >= 1"),
        (train.video_every >= 0, "train.video_every must be >= 0"),
        (config.distributed.workers >= 0, "distributed.workers must be >= 0"),
        (config.distributed.envs_per_worker >= 1, "distributed.envs_per_worker must be >= 1"),
        (config.distributed.replay_shards >= 1, "distributed.replay_shards must be >= 1"),
        (config.distributed.workers == 0
         or config.distributed.replay_shards <= config.distributed.workers,
         "distributed.replay_shards must be <= distributed.workers (a shard without a worker "
         "never fills)"),
        (config.distributed.timeout_s > 0, "distributed.timeout_s must be > 0"),
        (config.distributed.worker_cpus > 0, "distributed.worker_cpus must be > 0"),
        (learner.target_update_every >= 1, "learner.target_update_every must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"config: {message}")
    env = config.env
    bounds = [b for b in (env.subgoal_low, env.subgoal_high) if b is not None]
    if bounds and (len(bounds) != 2 or env.subgoal_indices is None
                   or {len(b) for b in bounds} != {len(env.subgoal_indices)}):
        raise ConfigError("config: env.subgoal_low and env.subgoal_high must be given together, "
                          "with env.subgoal_indices and as many entries")
    if env.entry_point is not None and not _ENTRY_POINT.fullmatch(env.entry_point):
        raise ConfigError(f"config: env.entry_point must look like 'package.module:factory', "
                          f"got {env.entry_point!r}")
    if env.subgoal_scale is not None and not all(
            math.isfinite(w) and w > 0 for w in env.subgoal_scale):
        raise ConfigError("config: env.subgoal_scale must hold finite weights > 0")
    if not 0.0 <= env.grasp_start <= 1.0:
        raise ConfigError(f"config: env.grasp_start must lie in [0, 1], got {env.grasp_start}")
    if env.grasp_place not in GRASP_PLACES:
        raise ConfigError(f"config: env.grasp_place must be one of {', '.join(GRASP_PLACES)}, "
                          f"got {env.grasp_place!r}")
    if env.subgoal_low is not None and any(
            lo >= hi for lo, hi in zip(env.subgoal_low, env.subgoal_high)):
        raise ConfigError("config: env.subgoal_low must be below env.subgoal_high everywhere")
