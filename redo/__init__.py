"""ReDo: measuring and recycling dormant neurons in deep reinforcement learning."""
