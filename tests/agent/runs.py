"""Tiny runs and comparisons shared by the tests of the single agent's loop."""

import pandas as pd

from redo.agent.config import DQNConfig
from redo.agent.metrics import TIMING_COLUMNS


def tiny(env_id="CartPole-v1", **overrides):
    """A run of a few hundred steps that still exercises every part of the loop."""
    settings = {
        "total_steps": 400,
        "learning_starts": 100,
        "replay_ratio": 0.5,
        "batch_size": 32,
        "buffer_size": 1_000,
        "target_update_period": 50,
        "epsilon_decay_steps": 200,
        "log_interval": 10,
        "checkpoint_interval": 1_000,
    }
    return DQNConfig.for_env(env_id, **(settings | overrides))


def without_timing(frame):
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


def assert_same_run(a, b):
    pd.testing.assert_frame_equal(without_timing(a.metrics), without_timing(b.metrics))
    pd.testing.assert_frame_equal(a.episodes, b.episodes)
