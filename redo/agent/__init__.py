"""One DQN agent: its settings, environments, replay, random streams and the training loop."""
