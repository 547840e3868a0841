"""K agents in lockstep (stacked networks, one batched update), sweeps and the campaign."""
