"""Test-wide settings; the small networks and reference computations are in tests/nets.py."""

import torch

# The test networks are tiny: intra-op threads only add overhead, and on a busy 2-core machine
# their spin-waiting makes each forward pass ~100x slower.
torch.set_num_threads(1)
