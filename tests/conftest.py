"""Test-session settings.

Under pytest-xdist each worker gets one thread: two workers with two threads each on a two-core
machine oversubscribe the cores and make the convolution-heavy model tests several times slower.
"""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
