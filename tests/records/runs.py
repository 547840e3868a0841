"""Small run folders shared by the tests of the run records."""

import gzip

import numpy as np
import pytest
import torch

from redo.records.record import EPISODES_FILE, METRICS_FILE
from redo.records.writer import RunWriter

CONFIG = {"env_id": "MinAtar/Breakout-v1", "seed": 3, "redo": {"tau": 0.1, "period": 1000}}
ROWS = [
    {"env_step": 100, "grad_step": 25, "loss": 0.5, "dormant_fraction": 0.125},
    {"env_step": 200, "grad_step": 50, "loss": float("nan"), "dormant_fraction": 0.25},
    {"env_step": 300, "grad_step": 75, "loss": 1e-7, "dormant_fraction": np.float32(0.5)},
]
EPISODES = [(150, 2.5, 150), (250, -1.0, 100), (300, 0.0, 50)]
POPULATION = {"id": "pop-a", "size": 4, "index": 2}


def write_run(folder, config=CONFIG, checkpoint_at=None, population=None):
    """A finished run with ROWS and EPISODES; a checkpoint at ``checkpoint_at`` if given."""
    with RunWriter(folder, config, population=population) as writer:
        for row in ROWS:
            writer.log_metrics(row)
            if row["env_step"] == checkpoint_at:
                writer.save_checkpoint({"env_step": checkpoint_at, "weights": torch.ones(2)})
        for episode in EPISODES:
            writer.log_episode(*episode)
    return folder


def interrupted_run(folder):
    """A run checkpointed at 200 that crashed after logging up to 300 and half a row."""
    with pytest.raises(RuntimeError), RunWriter(folder, CONFIG) as writer:
        for row in ROWS:
            writer.log_metrics(row)
            if row["env_step"] == 200:
                writer.save_checkpoint({"env_step": np.int64(200), "rng": np.random.get_state()})
        for episode in EPISODES:
            writer.log_episode(*episode)
        raise RuntimeError("crash")
    with (folder / EPISODES_FILE).open("a") as f:
        f.write("310,1.")
    return folder


def compress(folder, names=(METRICS_FILE, EPISODES_FILE)):
    """Replace the plain tables by gzip-compressed copies, as book/data keeps long runs."""
    for name in names:
        plain = folder / name
        plain.with_name(name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    return folder
