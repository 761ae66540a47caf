"""Root test configuration: tests never reach the network and use one CPU thread per op."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
