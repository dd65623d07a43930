import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
# Ray in tests: a private local instance, no token authentication, no dashboard (tests/test_ray*.py).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import torch

# Two cores: one torch thread per test process avoids oversubscription with the simulator.
torch.set_num_threads(1)
