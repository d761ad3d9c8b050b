"""hacray: distributed Hierarchical Actor-Critic with Hindsight Experience Replay, on Ray."""

__version__ = "0.1.0"
