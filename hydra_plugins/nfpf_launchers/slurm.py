"""``hydra/launcher=submitit_slurm``: submitit's SLURM launcher, with complete runs skipped
before submission, sweeps larger than the cluster's ``MaxArraySize`` submitted as several
arrays, and jobs that end without a result recorded as failed runs (see
:mod:`nfpf.cli.slurm`)."""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import OmegaConf

log = logging.getLogger("nfpf.slurm")


@dataclass
class NfpfSlurmQueueConf(SlurmQueueConf):
    """Schema of ``conf/hydra/launcher/submitit_slurm.yaml``: submitit's, plus the keys of
    :class:`SlurmLauncher`."""

    _target_: str = "hydra_plugins.nfpf_launchers.slurm.SlurmLauncher"
    max_array_size: int | None = None
    lost_after_s: float = 60.0
    poll_s: float = 5.0


def register_schema() -> None:
    """Make ``hydra/launcher=submitit_slurm`` validate against :class:`NfpfSlurmQueueConf`.

    Hydra matches a config file with the schema of the same name; submitit's plugin stores
    its own for ``submitit_slurm`` when Hydra scans the plugins, so the scan is done first
    and the entry replaced after it (on the nodes, jobs receive this process's store).
    """
    Plugins.instance().register(SlurmLauncher)  # the scan misses an editable install
    ConfigStore.instance().store(group="hydra/launcher", name="submitit_slurm",
                                 node=NfpfSlurmQueueConf, provider="nfpf")


class SlurmLauncher(SubmititSlurmLauncher):
    """submitit's SLURM launcher, plus three keys.

    Parameters
    ----------
    max_array_size : tasks per SLURM array; None asks the cluster (``MaxArraySize``).
    lost_after_s : seconds a job may be out of ``squeue`` with no result before it counts
        as lost (SLURM without accounting, where ``sacct`` cannot give its state).
    poll_s : seconds between two looks at the jobs.
    **params : submitit's launcher keys (``conf/hydra/launcher/submitit_slurm.yaml``).
    """

    def __init__(self, max_array_size: int | None = None, lost_after_s: float = 60.0,
                 poll_s: float = 5.0, **params: Any) -> None:
        super().__init__(**params)
        self.max_array_size = max_array_size
        self.lost_after_s = float(lost_after_s)
        self.poll_s = float(poll_s)

    def _executor(self) -> Any:
        """submitit's executor with this launcher's parameters (as submitit's launcher
        builds it)."""
        import submitit

        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]})
        base_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            key if key in base_keys else f"{self._EXECUTOR}_{key}": value
            for key, value in self.params.items() if key not in init_keys})
        return executor

    def _compose(self, overrides: Sequence[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from nfpf.cli import slurm
        from nfpf.cli.sweep_validation import config_groups

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = list(enumerate(job_overrides, start=initial_job_idx))
        complete, todo = slurm.split_complete(
            jobs, sweep_dir, self.config.hydra.output_subdir, self._compose,
            config_groups(self.hydra_context.config_loader))
        returns = {index: slurm.skipped_return(overrides) for index, overrides in complete}
        if todo:
            returns.update(self._submit_and_wait(todo, len(complete)))
        return [returns[index] for index, _ in jobs]

    def _submit_and_wait(self, todo: list, n_complete: int) -> dict[int, JobReturn]:
        from nfpf.cli import slurm

        size = self.max_array_size or slurm.max_array_size()
        arrays = slurm.batches(todo, size)
        executor = self._executor()
        # the arrays run side by side: together they keep to array_parallelism
        executor.update_parameters(slurm_array_parallelism=max(
            1, math.ceil(self.params["array_parallelism"] / len(arrays))))
        log.info("SLURM: submitting %d runs as %d array%s of at most %d tasks (%d complete "
                 "runs not submitted); nfpf-run waits for them", len(todo), len(arrays),
                 "" if len(arrays) == 1 else "s", size, n_complete)
        submitted = []
        for array in arrays:
            params = [(list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}",
                       Singleton.get_state()) for index, overrides in array]
            jobs = executor.map_array(self, *zip(*params, strict=True))
            submitted += [slurm.Submitted(index, overrides, job)
                          for (index, overrides), job in zip(array, jobs, strict=True)]
        log.info("SLURM job ids: %s", ", ".join(sorted({s.job.job_id.split("_")[0]
                                                         for s in submitted})))

        def on_lost(run: slurm.Submitted, state: str) -> JobReturn:
            slurm.record_lost(self._compose(run.overrides), run.job.job_id, state,
                              run.job.paths.stderr)
            return slurm.skipped_return(run.overrides)

        return slurm.wait_for(submitted, self.lost_after_s, self.poll_s, on_lost,
                              sacct=slurm.sacct_available())
