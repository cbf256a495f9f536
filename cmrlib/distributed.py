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
import sys

import torch
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.learner import Learner, defaults


def world_size() -> int:
    """Processes taking part (1 when not launched by accelerate / torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's place among them (0 writes the results)."""
    return int(os.environ.get("RANK", 0))


def launch_command(processes: int) -> list[str]:
    """The `accelerate launch` words before `cmrlib ...` that start `processes` processes on a free port of their
    own: two launches started at once on accelerate's default port can join one process group and fail."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m"]


class SplitDL(DistributedDL):
    """fastai's DistributedDL with an equal share of every epoch for each process, at least two samples of a
    training set (a training batch of one stops batch norm), its last short batch dropped by the one-process rule
    applied to the share, and the epoch order that rank 0 broadcasts sent through CPU tensors under gloo (fastai's
    own moves it to the GPU, which NCCL needs and a CPU process does not have)."""

    def __init__(self, dl, rank=None, world_size=None, device=None):
        super().__init__(dl, rank=rank, world_size=world_size, device=device)
        if self.dl.shuffle:  # `cmrlib.learn.dataloaders`: drop the last short batch when there is more than one
            self.dl.drop_last = self.drop_last = self.share() > self.bs

    def share(self) -> int:
        """Samples each process takes from an epoch."""
        n = self.dl.n
        share = -(-n // self.world_size)
        return max(share, 2) if self.dl.shuffle and n > 1 else share

    def __len__(self):
        return self.share() // self.bs if self.drop_last else -(-self.share() // self.bs)

    def get_idxs(self):
        idxs = self._broadcast(list(self.dl.get_idxs()), 0)
        self.n, share = len(idxs), self.share()
        self.n_padded = share * self.world_size  # repeats from the start of the epoch fill the shares, as fastai's
        idxs = (idxs * -(-self.n_padded // self.n))[:self.n_padded]
        return idxs[self.rank * share:(self.rank + 1) * share]

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
