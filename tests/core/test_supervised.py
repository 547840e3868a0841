import pandas as pd
import pytest
import torch

from redo.supervised import ShuffledLabelsConfig, train_with_shuffled_labels


def toy_data(n=96, d=6, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, d, generator=generator)
    labels = (inputs[:, 0] > 0).long() + (inputs[:, 1] > 0).long()
    return inputs, labels.clamp(max=classes - 1)


def test_rows_per_epoch_with_phases_and_dormant_columns():
    inputs, labels = toy_data()
    config = ShuffledLabelsConfig(shuffle_every=2, epochs=5, hidden=(16,), batch_size=32)
    frame = train_with_shuffled_labels(inputs, labels, config, taus=(0.0, 0.1))
    assert list(frame.epoch) == [1, 2, 3, 4, 5]
    assert list(frame.phase) == [0, 0, 1, 1, 2]
    assert {"loss", "accuracy", "dormant/tau=0", "dormant/tau=0.1"} <= set(frame.columns)
    assert frame["dormant/tau=0.1"].between(0, 1).all()
    assert (frame["dormant/tau=0.1"] >= frame["dormant/tau=0"]).all()


def test_fixed_labels_are_learned_and_stay_in_phase_zero():
    inputs, labels = toy_data()
    config = ShuffledLabelsConfig(shuffle_every=None, epochs=30, hidden=(32,), lr=1e-2)
    frame = train_with_shuffled_labels(inputs, labels, config)
    assert (frame.phase == 0).all()
    assert frame.accuracy.iloc[-1] > 0.9


def test_reshuffling_changes_the_targets():
    """Right after a reshuffle the accuracy on the new labels drops: the targets moved."""
    inputs, labels = toy_data()
    config = ShuffledLabelsConfig(shuffle_every=30, epochs=31, hidden=(32,), lr=1e-2)
    frame = train_with_shuffled_labels(inputs, labels, config)
    assert frame.accuracy.iloc[29] > 0.9
    assert frame.accuracy.iloc[30] < frame.accuracy.iloc[29] - 0.2


def test_same_seed_same_run():
    inputs, labels = toy_data()
    config = ShuffledLabelsConfig(shuffle_every=2, epochs=4, hidden=(16,), seed=3)
    first = train_with_shuffled_labels(inputs, labels, config)
    second = train_with_shuffled_labels(inputs, labels, config)
    assert first.equals(second)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("shuffle_every", 0, "shuffle_every"),
        ("epochs", 0, "epochs"),
        ("lr", 0.0, "lr"),
        ("hidden", (), "hidden"),
    ],
)
def test_bad_settings_are_rejected(field, value, match):
    settings = {"shuffle_every": 2, field: value}
    with pytest.raises(ValueError, match=match):
        ShuffledLabelsConfig(**settings)


def test_mismatched_data_is_rejected():
    inputs, labels = toy_data()
    with pytest.raises(ValueError, match="same, nonzero number"):
        train_with_shuffled_labels(inputs, labels[:-1], ShuffledLabelsConfig(shuffle_every=None))


def test_the_chapters_experiment_runs_three_conditions_per_seed():
    """shuffled_labels_experiment: fixed, reshuffled (for ``epochs``) and a fresh network (for
    one phase), per seed, each run as train_with_shuffled_labels would run it alone."""
    from redo.supervised import (
        FIXED_LABELS,
        FRESH_NETWORK,
        RESHUFFLED_LABELS,
        at_last_epoch,
        shuffled_labels_experiment,
    )

    inputs, labels = toy_data()
    table = shuffled_labels_experiment([3, 4], 4, 2, data=(inputs, labels), dataset="toy")
    runs = table.groupby(["labels", "seed"])["epoch"].max()
    assert runs.to_dict() == {
        (label, seed): epochs
        for label, epochs in ((FIXED_LABELS, 4), (RESHUFFLED_LABELS, 4), (FRESH_NETWORK, 2))
        for seed in (3, 4)
    }
    assert set(table["dataset"]) == {"toy"}
    alone = train_with_shuffled_labels(inputs, labels, ShuffledLabelsConfig(2, epochs=4, seed=4))
    mine = table.query("labels == @RESHUFFLED_LABELS and seed == 4")
    assert mine[alone.columns].reset_index(drop=True).equals(alone)
    last = at_last_epoch(table)
    assert len(last) == 6 and set(last["epoch"]) == {2, 4}


def test_the_experiment_is_kept_per_seed_and_read_back(tmp_path, monkeypatch):
    """load_or_run_experiment: the first call runs and keeps each seed's table; a later call
    with the same settings reads them back (running nothing), other settings run again."""
    from redo import supervised

    data = toy_data()
    first = supervised.load_or_run_experiment(tmp_path, [3, 4], 4, 2, data=data, dataset="toy")
    expected = supervised.shuffled_labels_experiment([3, 4], 4, 2, data=data, dataset="toy")
    pd.testing.assert_frame_equal(first, expected, check_exact=False, rtol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shuffled-labels-toy-epochs4-every2-seed3.csv",
        "shuffled-labels-toy-epochs4-every2-seed4.csv",
    ]

    def refuse(*args, **kwargs):
        raise AssertionError("the kept tables should have been read back")

    monkeypatch.setattr(supervised, "shuffled_labels_experiment", refuse)
    again = supervised.load_or_run_experiment(tmp_path, [4], 4, 2, data=data, dataset="toy")
    pd.testing.assert_frame_equal(again, first[first["seed"] == 4].reset_index(drop=True))
    with pytest.raises(AssertionError, match="read back"):
        supervised.load_or_run_experiment(tmp_path, [4], 6, 2, data=data, dataset="toy")
