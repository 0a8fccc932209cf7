"""Training the deep models on several processes (DDP) the way they train on one.

Lightning's DDP strategies give each process a shard of every epoch (a ``DistributedSampler``
that pads the shards to equal length by repeating samples) and average the gradients. What
still differs from one process is handled here, once for :mod:`nfpf.deep.resnet` and
:mod:`nfpf.deep.simclr`:

- **Batch size.** ``batch_size`` is the global batch of the recipe; each of the W processes
  takes ``ceil(batch / W)`` (:func:`per_device_batch`), so the number of steps per epoch and
  the learning-rate schedule stay those of one process.
- **BatchNorm running statistics.** DDP copies rank 0's buffers to every rank before each
  training forward, which then updates them with the rank's own batch: after the last step
  the ranks' statistics differ. :func:`broadcast_buffers` gives every rank rank 0's model
  before it is evaluated and when training ends.
- **Contrastive negatives.** :func:`gather_batch` hands every rank the projections of all
  ranks (with their gradients), so NT-Xent sees the negatives of the whole global batch.
- **Evaluation.** The padding repeats test samples; :func:`count_correct` counts each sample
  once over all ranks, so the accuracy is that of rank 0's model on the whole test set.
- **Batch order.** Lightning's ``DistributedSampler`` shuffles (seed 0, reshuffled every
  epoch); weight initialisation, dropout and augmentations still follow the run's seed.
- **Results of ``ddp_spawn``.** Only the state dict of rank 0 returns to the calling process,
  so the modules keep their training logs in ``get_extra_state``.
- **Sweeps.** :func:`spawn_context` gives each ``ddp_spawn`` fit a start method its processes
  can adopt (not joblib's ``loky``) and a rendezvous of its own (fits side by side), served
  by the calling process on a port that stays bound from the moment it is chosen
  (:func:`rendezvous_store`).
- **What travels to the workers.** ``ddp_spawn`` pickles the model and the data loaders to
  its processes. Torch passes CPU tensors between processes as file descriptors of shared
  memory, which containers and VMs often break (the worker dies in ``rebuild_storage_fd``).
  The data therefore travel as numpy arrays (:class:`ArrayDataset`, copied into each
  process), and the few tensors that remain (weights, metrics coming back) go through named
  shared-memory files (torch's ``file_system`` sharing), in both directions, for the fit only.
- **Logging.** A spawned process starts with logging unconfigured; :func:`capture_logging`
  and :func:`restore_logging` give rank 0 the caller's handlers (console, the run's log file),
  so per-epoch progress lines still appear.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from nfpf.core.device import gpu_memory_guard
from nfpf.core.trainer import quiet_lightning, quiet_this_process

__all__ = [
    "ArrayDataset",
    "DistributedHooks",
    "batch_order",
    "broadcast_buffers",
    "capture_logging",
    "count_correct",
    "describe_batch",
    "fit_module",
    "gather_batch",
    "per_device_batch",
    "rendezvous_store",
    "restore_logging",
    "spawn_context",
    "sum_over_ranks",
]


def _initialized_world() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def per_device_batch(batch: int, world_size: int) -> int:
    """Samples per process and step for a global batch of ``batch`` over ``world_size``."""
    return max(1, math.ceil(int(batch) / max(1, int(world_size))))


def describe_batch(batch: int, world_size: int) -> str:
    """``"128"`` on one process, ``"128 = 2 processes x 64"`` under DDP (for the logs)."""
    if world_size == 1:
        return str(batch)
    return f"{batch} = {world_size} processes x {per_device_batch(batch, world_size)}"


def fit_module(trainer: Any, module: Any, train_loader: Any, val_loader: Any = None, *,
               batch_option: str = "batch_size") -> None:
    """``trainer.fit(module, ...)`` quietly, with the caller's logging handed to ``module``
    (a :class:`DistributedHooks`) and what ``ddp_spawn`` workers need (:func:`spawn_context`).
    A GPU running out of memory is reported naming ``batch_option``, the config key that
    bounds it (e.g. ``"features.batch_size"``)."""
    module.logging_setup = capture_logging()
    with gpu_memory_guard(type(module).__name__, batch_option), quiet_lightning(), \
            spawn_context(trainer):
        trainer.fit(module, train_loader, val_loader)


class ArrayDataset(Dataset):
    """Samples held as numpy arrays, one item per row: ``(a[i], b[i], ...)`` as tensors.

    The in-memory dataset of the deep models' loaders. Unlike a ``TensorDataset`` it pickles
    by value, so ``ddp_spawn`` hands it to its processes without torch's shared-memory tensor
    passing (see the module notes).

    Parameters
    ----------
    *arrays : ndarray (or tensor, converted without copy when on the CPU) of equal length n
    """

    def __init__(self, *arrays: np.ndarray | torch.Tensor):
        self.arrays = [a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
                       for a in arrays]
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"ArrayDataset arrays must have equal lengths; got {lengths}.")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(np.array(a[index])) for a in self.arrays)


def batch_order(seed: int, world_size: int) -> torch.Generator | None:
    """The generator of a training DataLoader's shuffling: seeded on one process; ``None``
    under DDP, where Lightning's ``DistributedSampler`` orders the batches (seeded, reshuffled
    every epoch) and a ``torch.Generator`` cannot travel to ``ddp_spawn`` workers."""
    return torch.Generator().manual_seed(int(seed)) if world_size == 1 else None


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics, ...) to every rank; a no-op on
    one process."""
    if _initialized_world() == 1:
        return
    for buf in module.buffers():
        torch.distributed.broadcast(buf, src=0)


def sum_over_ranks(module: Any, values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` (as many on every rank) over the ranks of ``module``'s
    trainer (a LightningModule); ``values`` themselves on one process."""
    if module.trainer.world_size == 1:
        return [float(v) for v in values]
    dtype = torch.float32 if module.device.type == "mps" else torch.float64  # MPS: no float64
    gathered = module.all_gather(torch.tensor(list(values), dtype=dtype, device=module.device))
    return [float(v) for v in gathered.reshape(-1, len(values)).sum(dim=0)]


def gather_batch(module: Any, values: torch.Tensor) -> torch.Tensor:
    """The ``values`` (n, ...) of every rank stacked into (W·n, ...), rank by rank, with the
    gradient flowing back to each rank's own rows; ``values`` itself on one process.

    Each rank then computes the loss of the whole global batch. The backward of the gather
    sums the W ranks' gradients for a rank's rows, and DDP averages the parameter gradients
    over the W ranks: together, exactly the gradient of one process on the global batch.
    """
    if module.trainer.world_size == 1:
        return values
    return module.all_gather(values, sync_grads=True).reshape(-1, *values.shape[1:])


def count_correct(module: Any, index: torch.Tensor, correct: torch.Tensor) -> tuple[int, int]:
    """Correct predictions and evaluated samples over all ranks, each sample counted once.

    Parameters
    ----------
    module : LightningModule
        Its trainer gives the world size; its ``all_gather`` collects the ranks' results.
    index : int64 tensor of shape (m,)
        Dataset positions of the samples this rank evaluated (``m`` equal on every rank, as
        the ``DistributedSampler`` pads the shards).
    correct : bool tensor of shape (m,)
    """
    if module.trainer.world_size > 1:
        index = module.all_gather(index).reshape(-1)
        correct = module.all_gather(correct).reshape(-1)
    if index.numel() == 0:
        return 0, 0
    # a padded sample appears twice with the same outcome (the ranks hold one model)
    size = int(index.max()) + 1
    seen = torch.zeros(size, dtype=torch.bool, device=index.device)
    hit = torch.zeros(size, dtype=torch.bool, device=index.device)
    seen[index] = True
    hit[index] = correct.to(torch.bool)
    return int(hit.sum()), int(seen.sum())


def capture_logging() -> dict[str, Any]:
    """The root logger's level and its console / file handlers, in a picklable form."""
    root = logging.getLogger()
    handlers = []
    for handler in root.handlers:
        fmt = handler.formatter
        style = (getattr(fmt, "_fmt", None), getattr(fmt, "datefmt", None))
        if isinstance(handler, logging.FileHandler):
            handlers.append(("file", handler.baseFilename, *style))
        elif isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout,
                                                                              sys.stderr):
            handlers.append(("stream", "stdout" if handler.stream is sys.stdout else "stderr",
                             *style))
    return {"level": root.level, "handlers": handlers}


def restore_logging(setup: dict[str, Any] | None) -> None:
    """Configure a process started with logging unconfigured (a ``ddp_spawn`` worker) like the
    caller was; a no-op where the root logger already has handlers."""
    root = logging.getLogger()
    if not setup or root.handlers:
        return
    for kind, target, fmt, datefmt in setup["handlers"]:
        handler: logging.Handler
        if kind == "file":
            handler = logging.FileHandler(target, mode="a")
        else:
            handler = logging.StreamHandler(sys.stdout if target == "stdout" else sys.stderr)
        handler.setFormatter(logging.Formatter(fmt, datefmt))
        root.addHandler(handler)
    root.setLevel(setup["level"])


@contextlib.contextmanager
def spawn_context(trainer: Any) -> Iterator[None]:
    """Run ``trainer``'s fit with what processes spawned for it (``ddp_spawn``) need.

    - A start method they can adopt: a spawned process first sets its parent's, which in a
      joblib (loky) sweep worker is ``loky``, unknown to it.
    - Tensors passed through named shared-memory files, not file descriptors (see the
      module notes); the workers set the same in :meth:`DistributedHooks.on_fit_start`.
    - A rendezvous of their own, served by this process: :func:`rendezvous_store`.

    All are put back afterwards. A no-op for fits that start no process and for launchers
    that start the script anew (their processes must share the parent's port).
    """
    # ddp_spawn starts its processes even for one device (trainer=ddp on a one-GPU machine)
    if not spawns_processes(trainer) or trainer.num_nodes > 1:
        yield
        return
    method = multiprocessing.get_start_method(allow_none=True)
    foreign = method not in (None, "spawn", "fork", "forkserver")  # e.g. joblib's "loky"
    sharing = torch.multiprocessing.get_sharing_strategy()
    if foreign:
        multiprocessing.set_start_method("spawn", force=True)
    torch.multiprocessing.set_sharing_strategy(SPAWN_SHARING)
    try:
        with rendezvous_store():
            yield
    finally:
        torch.multiprocessing.set_sharing_strategy(sharing)
        if foreign:
            multiprocessing.set_start_method(method, force=True)


#: Where the spawned processes of one node meet (the rendezvous store of this process).
RENDEZVOUS_ADDRESS = "127.0.0.1"


@contextlib.contextmanager
def rendezvous_store() -> Iterator[int]:
    """Serve the rendezvous of the processes spawned inside the block; yields its port.

    The store (a ``TCPStore``) is bound to a port the kernel picks (port 0) and held until
    the block ends, and the workers learn it from the environment they inherit: torch's
    "agent store" hand-over (``TORCHELASTIC_USE_AGENT_STORE``, as ``torchrun`` serves its
    workers), with which every rank connects as a client to ``MASTER_ADDR:MASTER_PORT``
    instead of rank 0 binding that port itself. Choosing a free port, closing it and letting
    rank 0 bind it seconds later, once it started, leaves a gap in which any other process
    on the machine can take the port (two fits side by side in a sweep, an inherited
    ``MASTER_PORT``, another job's connection). Lightning reads ``MASTER_ADDR`` and
    ``MASTER_PORT`` from the environment; the three variables are put back afterwards.
    """
    store = torch.distributed.TCPStore(RENDEZVOUS_ADDRESS, 0, is_master=True,
                                       wait_for_workers=False)
    handed_over = {"MASTER_ADDR": RENDEZVOUS_ADDRESS, "MASTER_PORT": str(store.port),
                   "TORCHELASTIC_USE_AGENT_STORE": str(True)}
    before = {key: os.environ.get(key) for key in handed_over}
    os.environ.update(handed_over)
    try:
        yield store.port
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        del store  # stops serving


def spawns_processes(trainer: Any) -> bool:
    """True when ``trainer``'s strategy spawns its processes (``ddp_spawn``, also for one
    device): in the caller of the fit and in every process it started."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    strategy = getattr(trainer, "strategy", None)
    return isinstance(getattr(strategy, "launcher", None), _MultiProcessingLauncher)


#: torch's tensor sharing strategy while ``ddp_spawn`` processes run (see the module notes)
SPAWN_SHARING = "file_system"


class DistributedHooks:
    """LightningModule hooks shared by the deep models (list it before ``LightningModule``).

    At the start of a fit: rank 0 gets the caller's logging (:attr:`logging_setup`), every
    rank Lightning's quiet settings and an augmentation generator seeded by
    ``hparams.seed`` and the rank. At the end: rank 0's buffers on every rank. The list
    attributes named in :attr:`logged` travel in the state dict's extra state, so they return
    from ``ddp_spawn`` workers.
    """

    #: names of the list attributes holding the training logs
    logged: tuple[str, ...] = ()
    #: the caller's logging (:func:`capture_logging`), set before ``trainer.fit``
    logging_setup: dict[str, Any] | None = None

    def record_step_loss(self, loss: torch.Tensor, size: int = 1) -> None:
        """Keep a step's loss (and its batch size) on the device until the epoch ends:
        reading it at once (``float(loss)``) would wait for the GPU at every step."""
        if not hasattr(self, "_step_pending"):
            self._step_pending: list[tuple[torch.Tensor, int]] = []
        self._step_pending.append((loss.detach(), int(size)))

    def flush_step_losses(self) -> tuple[list[float], list[int]]:
        """The epoch's step losses as floats (one transfer) and their batch sizes, appended
        to ``step_losses``; the pending list is emptied."""
        pending = getattr(self, "_step_pending", [])
        self._step_pending = []
        if not pending:
            return [], []
        values = torch.stack([loss.float() for loss, _ in pending]).cpu().tolist()
        self.step_losses.extend(values)
        return values, [size for _, size in pending]

    def on_fit_start(self) -> None:
        rank = int(getattr(self.trainer, "global_rank", 0))
        if spawns_processes(self.trainer):
            # the tensors this worker sends back (metrics) must not travel by descriptor
            torch.multiprocessing.set_sharing_strategy(SPAWN_SHARING)
        if rank == 0:
            restore_logging(self.logging_setup)
        if self.device.type == "cuda" and int(getattr(self.trainer, "world_size", 1)) == 1:
            # tensor-core convolutions run fastest channels-last; under DDP the parameters
            # already sit in its gradient buckets, so the layout is left alone there
            self.to(memory_format=torch.channels_last)
        quiet_this_process()  # already so inside quiet_lightning; a ddp_spawn worker
        self._generator = torch.Generator().manual_seed(int(self.hparams.seed) + 7919 * rank)
        self._t0 = time.perf_counter()

    def on_train_end(self) -> None:
        broadcast_buffers(self)  # every rank ends with rank 0's model

    def get_extra_state(self) -> dict[str, list]:
        return {name: list(getattr(self, name)) for name in self.logged}

    def set_extra_state(self, state: Any) -> None:
        for name in self.logged:
            setattr(self, name, list(state[name]))
