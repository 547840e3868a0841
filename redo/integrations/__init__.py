"""ReDo for other libraries' agents: :mod:`redo.integrations.sb3` for stable-baselines3's DQN."""
