"""Test-wide settings."""

import torch

# Test tensors are tiny: one thread avoids OpenMP start-up cost per op and keeps timings steady.
torch.set_num_threads(1)
