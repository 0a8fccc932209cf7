"""Fit an :class:`~nfpf.method.sflm.SFLM` from a DataLoader with a Lightning Trainer.

The SFLM's fit depends on the data only through sums (``HᵀH``, ``HᵀT``, column sums,
min/max), so each training step adds one batch to them and the epoch end all-reduces them
across devices and solves. A type-1 SFLM (the reference) needs one epoch; a type-0 SFLM
needs one more (a min/max pass for its non-affine targets); each extra SFLM ``epoch`` adds
one. :func:`fit_sflm` sets ``max_epochs`` accordingly.

With several devices, Lightning's default ``DistributedSampler`` pads the dataset by
repeating samples until its size is a multiple of the device count; those repeats enter the
sums. Use a dataset whose size is a multiple of the device count, or pass
``use_distributed_sampler=False`` with a sampler that shards without padding.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from nfpf.core.trainer import make_trainer
from nfpf.method.sflm import SFLM, SFLMState

__all__ = ["LightningReducer", "SFLMModule", "fit_sflm"]


class LightningReducer:
    """:class:`~nfpf.method.sflm.Reducer` over the processes of a Lightning strategy."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy

    def all_reduce(self, tensor: torch.Tensor, op: str) -> torch.Tensor:
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        out = tensor.clone().contiguous()
        dist.all_reduce(out, op=ops[op])
        return out

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = tensor.clone().contiguous()
        dist.broadcast(out, src=0)
        return out


class SFLMModule(pl.LightningModule):
    """LightningModule whose "training" is one streamed closed-form SFLM fit.

    A thin wrapper: each training step is :meth:`SFLM.partial_fit
    <nfpf.method.sflm.SFLM.partial_fit>` of one batch, each epoch end an :meth:`SFLM.end_pass
    <nfpf.method.sflm.SFLM.end_pass>` with the statistics all-reduced across processes. The
    fitted state (:class:`~nfpf.method.sflm.SFLMState`) is the module's extra state, so it is
    part of ``state_dict()`` and ``load_state_dict`` fits the SFLM: that is how the fit comes
    back from ``ddp_spawn`` workers (Lightning copies the state dict back to the main process).

    Parameters
    ----------
    sflm : SFLM, optional
        The model to fit (its parameters: hidden size, activation, type, C, ...). Built
        from ``sflm_kwargs`` when omitted.
    **sflm_kwargs
        Passed to :class:`~nfpf.method.sflm.SFLM`.

    Notes
    -----
    Batches are tensors of shape (batch, ...) or tuples/lists whose first element is; they
    are flattened to (batch, d). Labels in the tuple are ignored. After ``trainer.fit`` the
    fitted model is ``module.sflm``. Memory per device: ``O(L² + L·d + batch·(L + d))``.
    """

    def __init__(self, sflm: SFLM | None = None, **sflm_kwargs: Any) -> None:
        super().__init__()
        self.sflm = sflm if sflm is not None else SFLM(**sflm_kwargs)
        self.automatic_optimization = False
        # DistributedDataParallel refuses modules without a trainable parameter; this one
        # only ever receives a zero loss (one scalar all-reduce per step, nothing learned)
        self.ddp_anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def n_epochs(self) -> int:
        """Epochs (passes over the DataLoader) a full fit needs."""
        return self.sflm.n_passes

    def configure_optimizers(self) -> None:
        return None

    def on_train_start(self) -> None:
        self.sflm.reset()  # a fresh fit (also after a previous trainer.fit)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.sflm.partial_fit(x.reshape(x.shape[0], -1))
        if self.trainer is not None and self.trainer.world_size > 1:
            self.manual_backward(self.ddp_anchor.sum() * 0.0)
        return None

    def on_train_epoch_end(self) -> None:
        reducer = None
        if self.trainer is not None and self.trainer.world_size > 1:
            reducer = LightningReducer(self.trainer.strategy)
        if self.sflm.end_pass(reducer):
            self.trainer.should_stop = True

    def get_extra_state(self) -> dict[str, Any]:
        """The SFLM's fitted state as plain data (empty before a fit)."""
        return self.sflm.export_state().as_dict() if self.sflm.is_fitted else {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Take a fitted state from :meth:`get_extra_state` (empty: not fitted)."""
        if state:
            self.sflm.load_state(SFLMState(**state))
        else:
            self.sflm.reset()


def fit_sflm(sflm: SFLM, dataloader: Any, trainer: Mapping[str, Any] | None = None,
             **trainer_kwargs: Any) -> SFLM:
    """Fit ``sflm`` from ``dataloader`` with a Lightning Trainer and return it.

    Parameters
    ----------
    sflm : SFLM
        Unfitted (or to be refitted) model.
    dataloader : torch.utils.data.DataLoader
        Yields tensors of shape (batch, ...) or tuples whose first item is.
    trainer : mapping, optional
        ``pytorch_lightning.Trainer`` settings (the ``trainer`` config group); CPU, one
        device when omitted. The Trainer is built by :func:`nfpf.core.trainer.make_trainer`:
        logging, checkpointing, progress bar and model summary are off unless given.
    **trainer_kwargs
        Further Trainer arguments (e.g. ``accelerator``, ``devices``, ``strategy``), over
        ``trainer``.

    Returns
    -------
    sflm : SFLM
        The fitted model.
    """
    module = SFLMModule(sflm)
    settings = {**(trainer or {}), **trainer_kwargs}
    lightning = make_trainer(settings, module.n_epochs, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*configure_optimizers.*returned `None`")
        lightning.fit(module, train_dataloaders=dataloader)
    if not module.sflm.is_fitted:  # ddp_spawn: the fit came back through the state dict
        raise RuntimeError("The Lightning fit ended before the SFLM was solved; "
                           f"max_epochs must be at least {module.n_epochs}.")
    return module.sflm
