"""Run configuration: frozen dataclasses loaded from YAML, with ``--set`` overrides.

Every field has a one-line docstring (the string literal under it). Loading validates each key
and type and raises :class:`ConfigError` with a message that names the offending key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from hacray.config_checks import validate
from hacray.config_parse import build, read_yaml
from hacray.errors import ConfigError


@dataclass(frozen=True)
class EnvConfig:
    id: str = "FetchReach-v4"
    """Gymnasium id of a goal-conditioned env (Fetch*-v4, PointMaze_*-v3, ... or any registered
    env with Dict observation/achieved_goal/desired_goal), a built-in (PointMass-v0), or a label
    for the env that entry_point makes."""
    entry_point: Optional[str] = None
    """'package.module:factory' that returns a gymnasium goal env (factory(**kwargs)); the module
    is imported from the installed packages or the working directory. None: gym.make(id)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for gym.make(id, ...) or the entry point's factory."""
    observe_achieved_goal: bool = False
    """Append the achieved goal to the observation (for envs whose observation leaves it out,
    e.g. AntMaze's x-y position, so that subgoals can name it)."""
    max_episode_steps: Optional[int] = None
    """Episode length T in env steps; None keeps the env's own time limit."""
    goal_threshold: Optional[float] = None
    """Distance at which the env goal counts as reached (and relabelled goals are rewarded);
    None uses the env's own distance_threshold (0.05 on Fetch)."""
    subgoal_indices: Optional[list[int]] = None
    """Observation indices that make up a subgoal; None uses the task's default projection
    (Fetch), else the whole observation where its box is bounded."""
    subgoal_low: Optional[list[float]] = None
    """Lower bound of each subgoal coordinate (keeps subgoals inside the reachable workspace);
    None takes the observation box's bounds, where they are finite."""
    subgoal_high: Optional[list[float]] = None
    """Upper bound of each subgoal coordinate (with subgoal_low)."""
    subgoal_threshold: Optional[float] = None
    """Distance at which a subgoal counts as reached; None uses goal_threshold."""
    subgoal_scale: Optional[list[float]] = None
    """Weight of each subgoal coordinate in that distance (its difference is multiplied by it
    before the norm), for subgoals that mix units, e.g. the gripper's position and its fingers'
    opening (0-0.05 m each); None weighs every coordinate 1."""
    grasp_start: float = 0.0
    """Share of training episodes that start with the object closed in the gripper (where:
    grasp_place; the goal is drawn as usual), the exploration aid Andrychowicz et al.
    (2017) used on FetchPickAndPlace. Evaluation episodes always start from the env's own
    reset. Fetch tasks with an object and a free gripper only; 0 (the default) leaves every
    episode's start to the env."""
    grasp_place: str = "start"
    """Where a grasped start holds the object: "start", at the gripper's start pose (about
    10 cm above the table), or "table", at the object's own drawn place, resting on the table
    (the gripper moved there first): the state a grasp from the table reaches."""


@dataclass(frozen=True)
class AgentConfig:
    levels: int = 2
    """Number of hierarchy levels; 1 is exactly DDPG+HER."""
    horizons: list[int] = field(default_factory=lambda: [5, 10])
    """Attempts per level, bottom first (H_0, H_1, ...); the top level's H caps its subgoals."""
    relabel: str = "hac"
    """Hindsight goal scheme: hac (final + future), future, final, episode, or none."""
    relabel_k: int = 4
    """Hindsight goals per transition (hac: the final goal plus k-1 future ones)."""
    terminate_on_goal: bool = True
    """Reaching the goal ends bootstrapping (discount 0), as in HAC; HER's baselines use False."""
    subgoal_test_prob: float = 0.3
    """Probability lambda that a proposed subgoal is tested (lower levels act without noise)."""
    random_eps: float = 0.2
    """Probability of a uniformly random action, per level, while exploring."""
    noise_std: float = 0.2
    """Gaussian exploration noise, as a fraction of each action's half-range."""
    level_random_eps: Optional[list[float]] = None
    """random_eps for each level, bottom first (e.g. [0.0, 0.2]: a motor level that takes no
    random actions, so a grasp is not dropped by a random finger command, under a top level
    that explores as before). None: random_eps on every level."""
    level_noise_std: Optional[list[float]] = None
    """noise_std for each level, bottom first. None: noise_std on every level."""
    subgoal_offset: Optional[list[float]] = None
    """Relative subgoals (HIRO-style): levels above 0 propose an offset of at most this much per
    subgoal coordinate from where the level below stands (what it can reach in its horizon);
    None: absolute subgoals anywhere in [env.subgoal_low, env.subgoal_high]."""
    subgoal_reach: Optional[list[float]] = None
    """Absolute subgoals kept within reach: the level below is given the proposed subgoal
    clipped to at most this far from where it stands, per subgoal coordinate (what it can reach
    in its horizon), so that a far proposal still moves it that way; the level above still
    proposes, and is relabelled, in absolute coordinates. None: no clipping. Not with
    subgoal_offset (relative subgoals are bounded by their own box)."""
    lower_sees_goal: bool = False
    """Level 0 also gets the env goal beside its subgoal (its goal input is the subgoal, then
    the env goal; whether it reached a subgoal is judged on the subgoal alone)."""
    top_relabel: Optional[str] = None
    """The top level's hindsight scheme; None: agent.relabel. With top_terminate_on_goal false,
    'future' trains the top level with flat HER's recipe (the one that works on Fetch)."""
    top_terminate_on_goal: Optional[bool] = None
    """Whether reaching the env goal ends the top level's bootstrapping; None: terminate_on_goal."""
    top_until_episode_end: bool = False
    """The top level proposes subgoals until the env's episode ends, not at most H_top times.
    HAC's cap ends an episode early when subgoals are reached in fewer than H_0 steps (on
    PointMaze_Large: ~60-100 of 800 steps). Its Q is then clipped to -1/(1-gamma), not -H_top."""
    top_time_aware: bool = False
    """The top level (with top_until_episode_end) pays for each attempt by the env steps it
    took, not -1 per attempt: an attempt of k steps gets the k steps' discounted rewards
    (-1 each, 0 on the step that reaches the goal) and the discount gamma^k (semi-MDP), and a
    missed subgoal test costs what failing for the product of the horizons in env steps would
    (HAC's -H, in env steps). Paid per attempt, an uncapped top level finds long attempts
    cheap: a subgoal the level below cannot reach takes all H_0 steps for one -1, and a
    tested miss's -H is no worse than failing on."""
    hold_at_goal: bool = False
    """While the env goal is reached, the top level does not act: it asks the level below to
    stay where it stands (a subgoal at its own position; flat: the zero action), and a lower
    level's attempt ends at the step that reaches it. HAC's rule that a level stops when its
    goal or one above is met, for tasks that score the episode's last step (Fetch): there
    2-level policies put the object on the goal and then pushed it off (BENCHMARKS.md)."""
    hold_radius: Optional[float] = None
    """With hold_at_goal, the hold begins only once the env goal is within this distance (None:
    the goal's own threshold, where the top level's reward begins). At the threshold, the hold
    stops a push or a carry the step the object crosses into the goal's sphere, at its edge,
    and a tenth of 2-level PickAndPlace's episodes ended just outside it (BENCHMARKS.md,
    twenty-fifth session); a smaller radius lets the top level go on inside the sphere first."""
    hold_anchored: bool = False
    """With hold_at_goal, the stay subgoal is the one set on the step the hold began, kept until
    the goal is lost, not asked anew each step at where the level below stands now. Asked anew,
    a stay ratifies any drift: on PickAndPlace the motor level, asked to keep the fingers at
    their opening, opened them a little each step, each next stay asked for that opening, and
    the object fell (BENCHMARKS.md, twenty-fourth session)."""
    test_top_noise: float = 0.0
    """In evaluation episodes (no exploration), the top level's action moved by uniform noise of
    this fraction of its action box's half-width: a stochastic top level, which a dead end of
    its deterministic policy does not hold (PointMaze: BENCHMARKS.md). 0: deterministic."""
    drop_degenerate: bool = True
    """Drop the top level's original-goal transitions of episodes whose goal is met at reset."""
    top_action_indices: Optional[list[int]] = None
    """Env action coordinates the top level sets itself, one value held for each of its
    subgoals, beside the subgoal (e.g. [3], Fetch's fingers: the top level decides when to
    grasp, which a gripper-position subgoal cannot ask for); level 0 sets the other coordinates.
    Its hindsight actions keep the values it set. None: level 0 sets the whole env action."""
    level0_speed: float = 1.0
    """Level 0's action box is the env's [-1, 1] times this, in training and evaluation alike:
    a motor level that moves at most this fraction of the env's full speed (Fetch: 0.05 m per
    step). 2-level Push objects that slide through the goal arrive faster than flat's
    (BENCHMARKS.md, nineteenth session); 1 is the env's own box."""


@dataclass(frozen=True)
class LearnerConfig:
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Hidden layer sizes of every actor and critic MLP (the top level's: see top_hidden)."""
    top_hidden: Optional[list[int]] = None
    """Hidden layer sizes of the top level's actor and critic, when it has a level below
    (agent.levels >= 2): a top level that has to learn the task (e.g. PickAndPlace's grasp and
    lift) with a motor level kept small and cheap. None: ``hidden``."""
    layer_norm: bool = False
    """A LayerNorm after each hidden layer (before its ReLU) of every actor and critic, as
    spitis/mrl's Fetch networks have."""
    twin_critics: bool = False
    """Two critics per level, whose targets bootstrap from the smaller Q (TD3's clipped double
    Q; SB3's TQC Fetch recipe has two critics too); the actor climbs the first. Costs a second
    critic step per update."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actors."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics."""
    batch_size: int = 256
    """Transitions per gradient step, per level."""
    gamma: float = 0.98
    """Discount factor."""
    polyak: float = 0.95
    """Target network averaging: target <- polyak * target + (1 - polyak) * online."""
    target_update_every: int = 1
    """Updates between two target averagings (HER's baselines: 40, once per cycle; HAC: 1)."""
    action_l2: float = 1.0
    """Penalty on level 0's squared (normalised) actions, as in HER's baselines; not subgoals."""
    subgoal_l2: float = 0.0
    """The same penalty on the subgoals of the levels above 0 (normalised to [-1, 1] over the
    subgoal box): it keeps their tanh out of saturation at the box's corners, where a
    deterministic top level can sit proposing subgoals the level below cannot reach, at the
    price of a pull towards the box's centre."""
    subgoal_preact_l2: float = 0.0
    """A penalty on the squared output of the subgoal actors (levels above 0) before their
    tanh, as rlkit's ``policy_pre_activation_weight``. Unlike ``subgoal_l2``, whose gradient
    vanishes with tanh' once an actor is saturated (|z| ~ 20-30, tanh' 0.0: the stalled
    FetchPush seed in BENCHMARKS.md), it pulls a saturated actor back in proportion to how far
    it is, and a healthy one (|z| ~ 0.5) hardly at all."""
    subgoal_preact_to: str = "centre"
    """Where ``subgoal_preact_l2`` pulls the subgoal coordinates: ``centre`` (z = 0: the
    subgoal box's centre) or ``goal`` (the subgoal at the level's own goal, clipped to 0.95 of
    the box's half-width; absolute subgoals whose coordinates are the goal's, as Fetch's
    gripper subgoals and object goals are). The values the top level sets directly (the
    fingers) are pulled to 0 either way. At the centre the pull also moves where a pushed object
    ends: PickAndPlace's 2-level misses were the object parked 5-6 cm from the goal on the side
    of the box's centre (BENCHMARKS.md, twenty-fifth session)."""
    subgoal_preact_free: float = 0.0
    """Pre-tanh distance from the pull's target that costs nothing: the penalty is on
    max(0, |z - target| - free)^2, so that with free > 0 it only reins in an actor nearing
    saturation (tanh(1.5) = 0.905 of the way to the box's bound) and leaves the inside alone."""
    obs_clip: float = 200.0
    """Raw observations and goals are clipped to +-obs_clip before normalising."""
    norm_clip: float = 5.0
    """Normalised inputs are clipped to +-norm_clip."""
    norm_eps: float = 0.01
    """Floor on the normaliser's standard deviation."""
    device: str = "auto"
    """Torch device of the learner: auto (cuda when available), cpu or cuda."""
    torch_threads: int = 1
    """Intra-op threads for torch on CPU."""
    updates_per_call: int = 4
    """Updates per learner call: their batches reach the learner's device in one copy, and
    (on a GPU) it is read back once per call, not at every step. Results do not depend on it;
    on a GPU raise it (e.g. 32) so the GPU waits less for the host. In a Ray run it is also the
    batches per sample request to the replay actor."""
    level_update_every: Optional[list[int]] = None
    """Per-level replay ratio, bottom level first: level i takes a gradient step on every
    k_i-th update only (k = 1 on all of them by default). [1, 2] gives the top level half the
    updates (it stores one transition per subgoal, H_0 times fewer than the level below) and
    cuts a 2-level learner's cost by about a quarter. Targets are averaged once per
    target_update_every of the level's own steps."""
    level_threads: int = 0
    """Threads that update the levels side by side: 0 is one per level, at most the machine's
    CPUs; 1 is one level after another. Each level's update touches only its own networks, so
    the results are the same, bit for bit, whatever the number."""


@dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 1_000_000
    """Transitions kept per level (ring buffer)."""
    min_size: int = 1000
    """Transitions the bottom level needs before training starts."""
    updates_per_env_step: float = 0.4
    """Replay ratio: gradient updates (each trains every level, unless
    learner.level_update_every spaces a level's out) per env step collected."""
    samples_per_env_step: Optional[float] = None
    """Replayed transitions per env step and level, kept whatever the batch: when set, the
    replay ratio is this / learner.batch_size updates per env step (updates_per_env_step is
    set from it). A GPU learner takes larger batches in about the time of small ones, so the
    same samples per env step in fewer, larger updates lets it keep up with more workers."""
    tolerance: float = 200.0
    """Rate limiter slack, in updates, before the faster side is made to wait."""
    her_at_sample: bool = False
    """Store each action once and draw its hindsight goals when it is sampled (as baselines,
    SB3 and mrl do), instead of storing it with agent.relabel_k hindsight goals fixed at
    insert: the same mix of goals, and capacity rows then hold relabel_k + 1 times the env
    steps. For the hac, future and final schemes."""
    her_actual: float = 0.0
    """With her_at_sample: the share of the hindsight goals that are instead the original goal
    of another stored row, drawn uniformly over the buffer (spitis/mrl's "futureactual"; with
    agent.relabel_k 4, 0.5 gives its futureactual_2_2 mix: 0.4 future, 0.4 actual, 0.2 the
    row's own goal). The critic then also sees, from every state, the goals the task really
    sets, which on FetchSlide lie far from where the puck stops. 0: future goals only."""
    lift_priority: float = 0.0
    """Replay the top level's rows of episodes whose achieved goal rose (an object lifted) up
    to 1 + this times as often as those of episodes where it did not: a row's weight is
    1 + lift_priority * min(rise / lift_full, 1), after energy-based prioritisation (Zhao and
    Tresp 2018; algo/priority.py). For PickAndPlace's air goals, which the top level otherwise
    learns from the few episodes that lifted the object. 0: uniform sampling."""
    lift_index: int = 2
    """The env goal's coordinate that is height, for lift_priority (Fetch: 2, the object's z)."""
    lift_full: float = 0.05
    """The rise (goal units; Fetch: metres) that earns the full weight, for lift_priority."""


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    """Root seed; split into independent streams for every env, worker, replay and learner."""
    max_env_steps: int = 5_000
    """Stop after this many env steps (exploration episodes only)."""
    eval_every: int = 1_000
    """Evaluate every this many env steps."""
    eval_episodes: int = 10
    """Deterministic evaluation episodes, on fixed evaluation seeds."""
    episodes_per_cycle: int = 2
    """Episodes collected between training bursts in the local runner."""
    checkpoint_keep: int = 3
    """Rotated checkpoints kept (plus best.pt by evaluation success)."""
    save_replay: bool = True
    """Save the replay buffer with every checkpoint (the newest only: ~240 bytes per stored
    transition on Fetch), so that --resume goes on exactly where the run stopped."""
    tensorboard: bool = True
    """Write TensorBoard events next to metrics.jsonl."""
    video_every: int = 10
    """Every this many evaluations, one evaluation episode goes to TensorBoard as a GIF (0: off)."""


@dataclass(frozen=True)
class DistributedConfig:
    workers: int = 0
    """Rollout worker actors; 0 runs everything in one process (the local runner)."""
    envs_per_worker: int = 1
    """Envs stepped by each rollout worker, side by side (one batched policy call per step)."""
    worker_cpus: float = 1.0
    """CPUs each rollout worker asks Ray for (fractions share cores)."""
    synchronous: bool = False
    """Lockstep mode: collect a cycle, then train what it owes, as the local runner does. With
    workers: 1 it reproduces the local run of the same seed exactly (slower; for checking)."""
    replay_shards: int = 1
    """Replay actors: worker i writes to shard i mod N, the learner samples from all, and the
    replay ratio holds over all of them. More than 1 when one replay actor's core cannot keep
    up with a fast (GPU) learner (see README, "How many workers pay off")."""
    address: Optional[str] = None
    """Ray cluster address ('auto' joins a running cluster); None starts a local Ray."""
    learner_gpus: float = -1.0
    """GPUs for the learner actor; -1 takes one when the cluster has a GPU, else none."""
    timeout_s: float = 60.0
    """Longest any blocking call between actors may wait before the run fails loudly."""


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


def load_config(path: Optional[str | Path] = None, overrides: tuple[str, ...] = ()) -> Config:
    """Read a YAML file (or the defaults), apply ``section.key=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        section, name = key.split(".", 1)
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"config: '{section}' must be a mapping")
        raw[section][name] = parsed
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """A config from the plain dict :func:`to_dict` made (e.g. the one a checkpoint keeps)."""
    config = build(Config, raw, "")
    validate(config)
    return _resolve(config)


def _resolve(config: Config) -> Config:
    """Settings derived from others: the replay ratio from replay.samples_per_env_step."""
    samples = config.replay.samples_per_env_step
    if samples is None:
        return config
    ratio = samples / config.learner.batch_size
    return dataclasses.replace(config, replay=dataclasses.replace(
        config.replay, updates_per_env_step=ratio))


def to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of a config, ready for YAML."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
