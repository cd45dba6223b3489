"""Suite-wide settings.

One torch thread: the suite also runs spawned loader workers, Dask workers and subprocesses on
2 cores, and torch's parallel ops slow down badly when their threads are preempted (see
`anyres_model.training.train.cpu_threads`).
"""

import torch

torch.set_num_threads(1)
