"""Synthetic run records whose values are known functions of each run's settings.

Written with the real ``RunWriter``, so they are run folders like any other. The analysis
tests check numbers against these functions; the chapter tests use them as the tiny dataset
the Results and Ablations chapters execute on at smoke parameters.
"""

from redo.agent.config import DQNConfig
from redo.analysis.tables import game_name
from redo.records.writer import RunWriter

GAMES = {"MinAtar/Breakout-v1": 0, "MinAtar/Freeway-v1": 1}  # env id -> game index
RATIOS = (0.25, 1.0)
SEEDS = (0, 1)
TOTAL, LEARNING_STARTS = 1000, 200
LOG_STEPS = tuple(range(300, TOTAL + 1, 100))  # 8 metric rows
RANDOM_BASE = {"Breakout": 1.0, "Freeway": 0.0}
LEARNED_ENDS = (500, 700, 950, 1000)


def dormant_value(game, redo, rr, seed, step, tau):
    """The synthetic fraction of dormant neurons: more without ReDo, at higher replay ratio,
    later in training and at a higher threshold."""
    base = 0.1 + 0.2 * (not redo) + 0.1 * rr + 0.05 * game + 0.01 * seed
    return base * step / TOTAL * {0.0: 0.25, 0.025: 0.5, 0.1: 1.0}[tau]


def level(game, redo, rr, seed):
    """The synthetic return scale of a run; a learned episode ending at step s returns
    level * s / TOTAL."""
    return 10 * (1 + game) * (2 if redo else 1) * (1 + rr) + seed


def recycling_columns(step):
    """What a ReDo run logs of its checks in the row at ``step``: one check per row, which
    recycled ``step // 100`` neurons, half of them (rounded down) recycled again."""
    return {
        "redo/calls": LOG_STEPS.index(step) + 1,
        "redo/recycled": step // 100,
        "redo/recycled_again": step // 200,
    }


def write_synthetic_run(folder, env_id, redo, rr, seed, *, population=None, **overrides):
    """One finished run of the single-agent loop, or of a population if ``population``
    (``{"id", "size", "index"}``) is given; ``overrides`` are DQNConfig settings."""
    game = GAMES[env_id]
    config = DQNConfig.for_env(
        env_id,
        seed=seed,
        redo=redo,
        replay_ratio=rr,
        total_steps=TOTAL,
        learning_starts=LEARNING_STARTS,
        **overrides,
    )
    with RunWriter(folder, config.to_dict(), population=population) as writer:
        for step in LOG_STEPS:
            dormant = {
                f"dormant/tau={tau:g}": dormant_value(game, redo, rr, seed, step, tau)
                for tau in (0.0, 0.025, 0.1)
            }
            writer.log_metrics(
                {"env_step": step, "grad_step": step - LEARNING_STARTS, **dormant, "loss": 0.5}
                | {"dormant/tau=0.1/fc1": 0.0}
                | (recycling_columns(step) if redo else {})
            )
        random_return = RANDOM_BASE[game_name(env_id)] + seed
        writer.log_episode(100, random_return, 100)
        writer.log_episode(LEARNING_STARTS, random_return + 2, 100)  # ends at learning_starts
        writer.log_episode(250, 100.0, 50)  # after learning_starts: not random play
        for end in LEARNED_ENDS:
            writer.log_episode(end, level(game, redo, rr, seed) * end / TOTAL, 50)
