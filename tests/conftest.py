import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")

import torch

# Two cores: one torch thread per test process avoids oversubscription with the simulator.
torch.set_num_threads(1)
