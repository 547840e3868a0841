"""Small tables made by hand, whose statistics can be checked on paper."""

import pandas as pd


def hand_final():
    """Final returns of two games, three settings, two seeds each."""
    rows = [
        ("A", "DQN", 1.0, [3, 5]),
        ("A", "DQN+ReDo", 1.0, [7, 9]),
        ("A", "DQN", 0.25, [10, 2]),
        ("B", "DQN", 1.0, [0, 2]),
        ("B", "DQN+ReDo", 1.0, [4, 4]),
        ("B", "DQN", 0.25, [-1, 1]),
    ]
    return pd.DataFrame(
        [
            {"game": g, "method": m, "replay_ratio": rr, "seed": s, "final_return": r}
            for g, m, rr, returns in rows
            for s, r in enumerate(returns)
        ]
    )


def scores_frame(values_by_stratum, group="DQN"):
    """One row per score: ``method`` (the group), ``game`` (the stratum) and ``score``."""
    return pd.DataFrame(
        [
            {"method": group, "game": stratum, "score": v}
            for stratum, values in values_by_stratum.items()
            for v in values
        ]
    )
