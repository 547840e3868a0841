"""The paper's control experiment: supervised learning with targets that move.

Sokar et al. (2023, section 3) ask whether dormant neurons come from reinforcement learning
as such or from the non-stationarity of its targets. They train a classifier whose labels
are reshuffled from time to time (the inputs stay the same, the input -> label map changes)
and compare it with the same classifier on fixed labels. This module runs that experiment
on any small dataset held in memory, and records the dormant fraction after every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from redo.core.dormant import PAPER_TAUS, dormant_scores, dormant_summary
from redo.core.networks import mlp
from redo.records.storage import atomic_write


@dataclass(frozen=True)
class ShuffledLabelsConfig:
    """One run of the control experiment.

    ``shuffle_every`` is the number of epochs between two reshufflings of the labels; ``None``
    keeps the labels fixed (the stationary control).
    """

    shuffle_every: int | None
    epochs: int = 160
    batch_size: int = 64
    lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shuffle_every is not None and self.shuffle_every < 1:
            raise ValueError(f"shuffle_every must be >= 1 epoch or None, got {self.shuffle_every}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list at least one positive width, got {self.hidden}")


def train_with_shuffled_labels(
    inputs: Tensor, labels: Tensor, config: ShuffledLabelsConfig, taus: Sequence[float] = PAPER_TAUS
) -> pd.DataFrame:
    """Train a classifier with Adam and return one row of measurements per epoch.

    Columns: ``epoch``, ``phase`` (how many reshufflings so far), ``loss`` and ``accuracy`` on
    the current labels over the whole dataset, and ``dormant/tau=<tau>`` (total dormant /
    total neurons) for each tau, scored on the whole dataset after the epoch.
    """
    if inputs.shape[0] != labels.shape[0] or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs and labels must hold the same, nonzero number of examples, got "
            f"{inputs.shape[0]} and {labels.shape[0]}"
        )
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    network = mlp(inputs.shape[1], int(labels.max()) + 1, config.hidden)  # a ReLU MLP
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    current = labels.clone()
    rows = []
    for epoch in range(1, config.epochs + 1):
        phase = 0 if config.shuffle_every is None else (epoch - 1) // config.shuffle_every
        if (
            config.shuffle_every is not None
            and epoch > 1
            and (epoch - 1) % config.shuffle_every == 0
        ):
            current = current[torch.randperm(len(current), generator=generator)]
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = nn.functional.cross_entropy(network(inputs[batch]), current[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            logits = network(inputs)
        summary = dormant_summary(dormant_scores(network, inputs), taus)
        rows.append(
            {
                "epoch": epoch,
                "phase": phase,
                "loss": float(nn.functional.cross_entropy(logits, current)),
                "accuracy": float((logits.argmax(dim=1) == current).float().mean()),
                **{f"dormant/tau={tau:g}": summary.fraction(tau) for tau in summary.taus},
            }
        )
    return pd.DataFrame(rows)


#: The conditions of :func:`shuffled_labels_experiment`, as its ``labels`` column names them.
FIXED_LABELS = "fixed labels"
RESHUFFLED_LABELS = "labels reshuffled"
FRESH_NETWORK = "fresh network, shuffled labels"


def digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8x8 digit images, as float inputs in [0, 1], and their labels."""
    from sklearn.datasets import load_digits  # the book's extra; imported when asked for

    inputs, labels = load_digits(return_X_y=True)
    return torch.tensor(inputs / 16.0, dtype=torch.float32), torch.tensor(labels)


def shuffled_labels_experiment(
    seeds: Sequence[int],
    epochs: int,
    shuffle_every: int,
    data: tuple[Tensor, Tensor] | None = None,
    dataset: str = "digits",
    taus: Sequence[float] = PAPER_TAUS,
) -> pd.DataFrame:
    """The phenomenon chapter's experiment, for each seed: the classifier on fixed labels, the
    same classifier with its labels reshuffled every ``shuffle_every`` epochs, and, as a
    plasticity reference, a *fresh* network trained ``shuffle_every`` epochs (one phase) on the
    labels permuted at random once.

    ``data`` is ``(inputs, labels)``, by default :func:`digits`. Returns the rows of
    :func:`train_with_shuffled_labels` of every run, with the columns ``labels`` (one of
    :data:`FIXED_LABELS`, :data:`RESHUFFLED_LABELS` and :data:`FRESH_NETWORK`), ``seed`` and
    ``dataset`` (the name given, for the claim tables' strata).
    """
    inputs, labels = digits() if data is None else data
    runs = []
    for seed in seeds:
        for name, every in ((FIXED_LABELS, None), (RESHUFFLED_LABELS, shuffle_every)):
            config = ShuffledLabelsConfig(shuffle_every=every, epochs=epochs, seed=seed)
            run = train_with_shuffled_labels(inputs, labels, config, taus)
            runs.append(run.assign(labels=name, seed=seed))
        permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        config = ShuffledLabelsConfig(shuffle_every=None, epochs=shuffle_every, seed=seed)
        run = train_with_shuffled_labels(inputs, labels[permutation], config, taus)
        runs.append(run.assign(labels=FRESH_NETWORK, seed=seed))
    return pd.concat(runs, ignore_index=True).assign(dataset=dataset)


def load_or_run_experiment(
    folder: str | Path,
    seeds: Sequence[int],
    epochs: int,
    shuffle_every: int,
    data: tuple[Tensor, Tensor] | None = None,
    dataset: str = "digits",
) -> pd.DataFrame:
    """:func:`shuffled_labels_experiment`, with each seed's table kept in ``folder`` as a CSV
    named by its settings: a seed that an earlier execution ran there with the same settings
    is read back instead of trained again. So the phenomenon chapter runs the experiment
    and the results chapter, which tests the same claim with the same seeds, reuses it.

    ``dataset`` names ``data`` in the file names: give other data another name.
    """
    folder = Path(folder)
    tables = []
    for seed in seeds:
        path = (
            folder / f"shuffled-labels-{dataset}-epochs{epochs}-every{shuffle_every}-seed{seed}.csv"
        )
        if not path.exists():
            table = shuffled_labels_experiment([seed], epochs, shuffle_every, data, dataset)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f, table=table: table.to_csv(f, index=False))
        tables.append(pd.read_csv(path))
    return pd.concat(tables, ignore_index=True)


def at_last_epoch(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`shuffled_labels_experiment` table at each run's last epoch (each
    condition's and seed's)."""
    last = table.groupby(["labels", "seed"])["epoch"].transform("max")
    return table[table["epoch"] == last].reset_index(drop=True)
