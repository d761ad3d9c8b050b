"""Hindsight goals drawn at sample time (``replay.her_at_sample``), as pure functions.

Insert-time relabelling (relabel.py) stores every action k+1 times (its original goal and k
hindsight goals), so a buffer of C rows holds only the newest ~C/(k+1) actions. Here each
action is stored once, with two more columns: the level's achieved goal after the action, and
how many rows ahead its segment's last action lies. A sampled row then gets a hindsight goal
with the probability it would have had among the stored copies, r/(r+1) for r relabels per
action (future and hac: k; final: 1), drawn as relabel.py draws it: future uniform over the
achieved goals of this action's and the later actions' outcomes, final the segment's last, hac
the last with probability 1/k and else future. Rewards and discounts are recomputed as at
insert. Subgoal-test penalty rows are never relabelled (they are not at insert either).

A share of the hindsight goals can instead be "actual" goals (spitis/mrl's futureactual): the
original goal of another stored row, drawn uniformly from the buffer, so that the critic also
learns, from every state, what the goals the task really sets are worth.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hacray.algo.relabel import segment_transitions
from hacray.goals import ReachedFn
from hacray.types import Segment, Transitions

KEEP, MAY, MUST = 0.0, 1.0, 2.0  # a row's mode: never relabelled / maybe / always


class Hindsight(NamedTuple):
    """Per stored row: the achieved goal after its action (N, goal_dim); rows ahead to its
    segment's last action (N,); KEEP, MAY or MUST relabel (N,). Float32, as replay stores."""

    achieved_next: np.ndarray
    ahead: np.ndarray
    mode: np.ndarray


def base_rows(segment: Segment, *, reached: ReachedFn, gamma: float, horizon: int,
              terminate_on_goal: bool, keep_original: bool,
              rng: np.random.Generator) -> tuple[Transitions, Hindsight]:
    """One segment's stored rows: its actions under the original goal in order (MUST be
    relabelled when the original goal is not to be kept), then its subgoal-test penalties."""
    n = len(segment.actions)
    rows = segment_transitions(segment, reached=reached, gamma=gamma, horizon=horizon,
                               scheme="none", k=0, terminate_on_goal=terminate_on_goal,
                               rng=rng, keep_original=True)
    penalties = len(rows) - n
    hindsight = Hindsight(
        achieved_next=np.concatenate([segment.achieved[1:], segment.achieved[1:][
            np.flatnonzero(segment.tested & segment.missed)]]).astype(np.float32),
        ahead=np.concatenate([np.arange(n - 1, -1, -1), np.zeros(penalties)]).astype(np.float32),
        mode=np.concatenate([np.full(n, MAY if keep_original else MUST),
                             np.full(penalties, KEEP)]).astype(np.float32))
    return rows, hindsight


def relabel_probability(scheme: str, k: int) -> float:
    """The share of hindsight goals among an action's stored copies at insert time."""
    relabels = {"future": k, "hac": k, "final": 1}[scheme]
    return relabels / (relabels + 1)


def draw_offsets(ahead: np.ndarray, mode: np.ndarray, scheme: str, k: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Rows ahead of each sampled row whose achieved goal becomes its goal; -1: keep its own."""
    n = len(ahead)
    ahead = ahead.astype(np.int64)
    relabel = (mode == MUST) | ((mode == MAY) & (rng.random(n) < relabel_probability(scheme, k)))
    if scheme == "final":
        offsets = ahead
    else:  # future: uniform over 0 .. ahead; hac: the last with probability 1/k, else future
        offsets = np.floor(rng.random(n) * (ahead + 1)).astype(np.int64)
        if scheme == "hac":
            offsets = np.where(rng.random(n) < 1.0 / max(k, 1), ahead, offsets)
    return np.where(relabel, offsets, -1)


def draw_actual(chosen: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which of the relabelled rows (``chosen``) take another row's original goal instead of
    one of their own achieved goals: each with probability ``share``."""
    if share <= 0.0:  # draws nothing, so runs without it sample as they always did
        return np.zeros_like(chosen)
    return chosen & (rng.random(len(chosen)) < share)


def relabelled(batch: Transitions, achieved_next: np.ndarray, goals: np.ndarray,
               chosen: np.ndarray, *, reached: ReachedFn, gamma: float,
               terminate_on_goal: bool) -> Transitions:
    """``batch`` with the rows where ``chosen`` holds given ``goals``, rewards recomputed."""
    if not chosen.any():
        return batch
    goal = np.where(chosen[:, None], goals, batch.goal).astype(np.float32)
    hit = reached(achieved_next, goal)
    reward = np.where(chosen, hit.astype(np.float32) - 1.0, batch.reward)
    discount = np.where(chosen, np.where(hit & terminate_on_goal, 0.0, gamma), batch.discount)
    return Transitions(obs=batch.obs, goal=goal, action=batch.action,
                       reward=reward.astype(np.float32), discount=discount.astype(np.float32),
                       next_obs=batch.next_obs)
