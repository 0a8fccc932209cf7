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
from nfpf.method.sflm import SFLM

__all__ = ["LightningReducer", "SFLMModule", "fit_sflm"]

_RESULT_NAMES = ("input_weights_", "bias_", "beta_", "output_bias_", "hidden_min_",
                 "hidden_max_", "target_min_", "target_max_")


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
    fitted model is ``module.sflm``; its results are also registered as buffers, so they
    survive ``ddp_spawn`` (Lightning copies the state dict back to the main process).
    Memory per device: ``O(L² + L·d + batch·(L + d))``.
    """

    def __init__(self, sflm: SFLM | None = None, **sflm_kwargs: Any) -> None:
        super().__init__()
        self.sflm = sflm if sflm is not None else SFLM(**sflm_kwargs)
        self.automatic_optimization = False
        for name in _RESULT_NAMES:
            self.register_buffer(name.rstrip("_"), torch.empty(0, dtype=torch.float64))
        self.register_buffer("n_samples_seen", torch.zeros((), dtype=torch.float64))
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
        self.sflm._reset()  # a fresh fit (also after a previous trainer.fit)

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
        done = self.sflm.end_pass(reducer)
        if done:
            self._export()
            self.trainer.should_stop = True

    def _export(self) -> None:
        for name in _RESULT_NAMES:
            value = getattr(self.sflm, name)
            setattr(self, name.rstrip("_"), value.detach().to(torch.float64).clone())
        self.n_samples_seen = torch.tensor(float(self.sflm.n_samples_seen_),
                                           dtype=torch.float64)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # results have data-dependent shapes: adopt the stored shapes, then rebuild the SFLM
        for name in (*[n.rstrip("_") for n in _RESULT_NAMES], "n_samples_seen"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if self.beta.numel():
            self._import()

    def _import(self) -> None:
        sflm = self.sflm
        dtype = sflm._torch_dtype
        sflm._reset()
        sflm._d = int(self.beta.shape[1])
        sflm.input_weights_ = self.input_weights.to(dtype).clone()
        sflm.bias_ = self.bias.to(dtype).clone()
        for name in _RESULT_NAMES[2:]:
            setattr(sflm, name, getattr(self, name.rstrip("_")).clone())
        sflm.n_samples_seen_ = int(self.n_samples_seen.item())
        sflm._phase = "done"


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
    if not module.sflm.is_fitted:
        if module.beta.numel():
            module._import()  # results came back through the state dict (ddp_spawn)
        else:
            raise RuntimeError("The Lightning fit ended before the SFLM was solved; "
                               f"max_epochs must be at least {module.n_epochs}.")
    return module.sflm
