"""The one home of the Lightning Trainer: every model that Lightning trains gets it here.

The ``trainer`` config group (``conf/trainer/``: ``cpu``, ``gpu``, ``ddp``) is a mapping of
``pytorch_lightning.Trainer`` arguments. The deep models (ResNet-18 classifier, SimCLR), the
Lightning classifiers (``lightning_linear``, ``lightning_mlp``), DUAL's and ALMS's
autoencoders and the SFLM module all build their Trainer with :func:`make_trainer` from
that mapping, so ``trainer=gpu`` moves every one of them to the GPU. :func:`check_trainer`
refuses, before any work, settings that cannot run here (a GPU that is not there, a
strategy that would start the whole command again).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "DEFAULT_TRAINER",
    "check_accelerator",
    "check_in_process_strategy",
    "check_one_device",
    "check_trainer",
    "device_count",
    "inference_device",
    "make_trainer",
    "quiet_lightning",
    "quiet_this_process",
    "trainer_settings",
]

#: Trainer settings used when the config gives none (CPU, one process, float32).
DEFAULT_TRAINER: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
}

_GPU_ACCELERATORS = ("gpu", "cuda")


def trainer_settings(trainer: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`DEFAULT_TRAINER` updated with the configured ``trainer`` mapping."""
    if trainer is None:
        return dict(DEFAULT_TRAINER)
    if not isinstance(trainer, Mapping):
        raise ValueError(
            f"trainer must be a mapping of pytorch_lightning.Trainer arguments (accelerator, "
            f"devices, strategy, precision, ...) or null; got {trainer!r}."
        )
    settings = dict(DEFAULT_TRAINER)
    settings.update({str(k): v for k, v in trainer.items()})
    return settings


def check_in_process_strategy(trainer: Mapping[str, Any] | None, who: str) -> None:
    """Refuse a multi-device strategy that starts the whole command again once per device.

    Lightning's ``ddp`` (and ``fsdp``, ``deepspeed``) launch the running script anew in one
    process per device. Inside a pipeline run that repeats everything around the training
    (data, selection, the result files and, under ``--multirun``, the sweep itself); the
    spawn-based strategies (``ddp_spawn``) start processes for the training only.
    """
    settings = trainer_settings(trainer)
    strategy = settings.get("strategy", "auto")
    if not isinstance(strategy, str):
        return  # a Strategy object: the caller chose its launcher
    name = strategy.lower()
    relaunches = name.startswith(("ddp", "fsdp", "deepspeed")) and not any(
        key in name for key in ("spawn", "fork", "notebook"))
    several = device_count(trainer) != 1 or int(settings.get("num_nodes", 1) or 1) > 1
    if relaunches and several:
        raise ValueError(
            f"{who}.trainer.strategy={strategy!r} would start the whole command again in one "
            f"process per device, repeating the selection, the result files and, under "
            f"--multirun, the sweep. Use trainer=ddp (strategy ddp_spawn: processes for the "
            f"training only), or call the model from a script of your own for {strategy!r}."
        )


def make_trainer(trainer: Mapping[str, Any] | None, max_epochs: int, progress: bool,
                 **extra: Any):
    """A ``pytorch_lightning.Trainer`` with the configured settings and quiet defaults.

    ``trainer`` gives accelerator / devices / strategy / precision and any other Trainer
    argument (it wins over the quiet defaults: no logger, no checkpoints, no model summary).
    """
    import pytorch_lightning as pl

    kwargs: dict[str, Any] = {
        "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
        "enable_progress_bar": bool(progress), "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
    }
    kwargs.update(extra)
    kwargs.update(trainer_settings(trainer))
    kwargs["max_epochs"] = int(max_epochs)
    return pl.Trainer(**kwargs)


#: Lightning messages that say nothing actionable about these in-memory, small-data fits.
_QUIET_WARNINGS = (
    r".*does not have many workers.*", r".*number of training batches.*",
    r".*GPU available but not used.*", r".*LeafSpec.*", r".*log_every_n_steps.*",
    r".*TPU available.*", r".*`validation_step` but have no `val_dataloader`.*",
    r".*torch.distributed.nn.functional.all_gather is deprecated.*",
    r".*when logging on epoch level in distributed setting.*",
    # on a SLURM login node: nfpf's sweeps reach SLURM through their launcher, not srun
    r".*The `srun` command is available on your system but is not used.*",
)


_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")


def quiet_this_process() -> None:
    """Install the warning filters and logger levels of :func:`quiet_lightning` in this
    process (a ``ddp_spawn`` worker starts without the caller's)."""
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Mute Lightning's start-up chatter and small-data warnings for the duration only."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings():
            quiet_this_process()
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def inference_device(trainer: Mapping[str, Any] | None) -> torch.device:
    """Device for embedding / prediction after training: the first GPU when configured."""
    accel = str(trainer_settings(trainer).get("accelerator", "cpu")).lower()
    if accel in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    if accel in ("mps", "auto") and getattr(torch.backends, "mps", None) is not None \
            and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_count(trainer: Mapping[str, Any] | None) -> int | None:
    """Processes the settings ask for: ``devices`` as a count, the length of a list of
    devices, or ``None`` for "every visible one" (``-1``, ``"auto"``)."""
    devices = trainer_settings(trainer).get("devices", 1)
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices)
    text = str(devices).strip()
    if text in ("-1", "auto"):
        return None
    if "," in text:  # "0,1": a list of GPU indices
        return len([part for part in text.split(",") if part.strip()])
    try:
        return int(text)
    except ValueError:
        return None


def check_accelerator(trainer: Mapping[str, Any] | None, who: str) -> None:
    """Refuse a GPU accelerator on a machine without a CUDA GPU, naming the CPU settings."""
    settings = trainer_settings(trainer)
    accelerator = str(settings.get("accelerator", "cpu")).lower()
    if accelerator not in _GPU_ACCELERATORS or torch.cuda.is_available():
        return
    several = device_count(trainer) != 1
    fix = ("trainer.accelerator=cpu trainer.devices=2 (two CPU processes) or trainer=cpu"
           if several else "trainer=cpu")
    raise ValueError(
        f"{who}.trainer.accelerator={accelerator} but this machine has no CUDA GPU; use {fix}."
    )


def check_trainer(trainer: Mapping[str, Any] | None, who: str) -> None:
    """Everything about ``trainer`` that can be checked before any work: its type, a GPU
    that is not there, and a strategy that relaunches the command
    (:func:`check_in_process_strategy`)."""
    check_accelerator(trainer, who)
    check_in_process_strategy(trainer, who)


def check_one_device(trainer: Mapping[str, Any] | None, who: str) -> None:
    """Refuse several devices for a model that trains on one (a full-batch fit)."""
    if device_count(trainer) != 1:
        raise ValueError(
            f"{who} trains on one device (one full batch per step); got trainer.devices="
            f"{trainer_settings(trainer).get('devices')!r}. Use trainer=cpu or trainer=gpu."
        )
