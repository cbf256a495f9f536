"""Data-parallel training over the processes `accelerate launch` (or `torchrun`) started: N GPUs, or N CPU processes
talking over gloo. fastai's `DistributedTrainer` (what `Learner.distrib_ctx` adds) wraps the model in
DistributedDataParallel and gives each process its share of every epoch; here it is added to every Learner made
while `data_parallel()` is open, so a method's own training function runs unchanged.

    with data_parallel():            # one process: does nothing
        learn = edes.fit(dls, ...)   # N processes: each sees 1/N of the batches, gradients averaged
"""
from __future__ import annotations

import contextlib
import os

import torch
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.learner import Learner, defaults


def world_size() -> int:
    """Processes taking part (1 when not launched by accelerate / torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's place among them (0 writes the results)."""
    return int(os.environ.get("RANK", 0))


class SplitDL(DistributedDL):
    """fastai's DistributedDL, whose epoch order rank 0 broadcasts through CPU tensors when the backend is gloo
    (fastai's own moves it to the GPU, which NCCL needs and a CPU process does not have)."""

    def _broadcast(self, t, rank):
        if torch.distributed.get_backend() == "nccl":
            return super()._broadcast(t, rank)
        t = torch.tensor(t, dtype=torch.long)
        torch.distributed.broadcast(t, rank)
        return t.tolist()


class DataParallel(DistributedTrainer):
    """`DistributedTrainer` for GPUs (NCCL, synchronised batch norm) or CPU processes (gloo)."""

    def __init__(self):
        from accelerate import DistributedDataParallelKwargs

        gpu = torch.cuda.is_available()
        # a network whose step leaves some parameters out of the loss (CUSSP's classifier head while Barlow Twins
        # pretrains the encoder) would stop DistributedDataParallel at its second step without it
        super().__init__(sync_bn=gpu, cpu=not gpu,
                         kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else SplitDL(dl, device=self.learn.model.device)


@contextlib.contextmanager
def data_parallel():
    """Every fastai Learner made inside the block trains data-parallel over the launched processes."""
    if world_size() <= 1:
        yield
        return
    defaults.callbacks.append(DataParallel)
    try:
        yield
    finally:
        defaults.callbacks.remove(DataParallel)


@contextlib.contextmanager
def main_process_first():
    """Process 0 runs the block before the others (accelerate's `main_process_first`): what it writes (a phantom
    cohort a Study makes) the others then find instead of writing the same folder at the same time."""
    if world_size() <= 1:
        yield
        return
    from accelerate import PartialState

    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():  # as DataParallel's Accelerator
        yield


def single(learn: Learner) -> Learner:
    """The learner without its data-parallel callback, to evaluate in each process on the whole validation set."""
    if any(isinstance(cb, DataParallel) for cb in learn.cbs):
        learn.remove_cb(DataParallel)
    return learn
