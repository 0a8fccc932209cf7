"""``nfpf-select``: choose which images of your own folder to label.

    nfpf-select input=path/to/images budget=100 output=picks
    nfpf-select input=path/to/images budget=100 output=picks selector=coreset features=raw
    python -m nfpf.cli.select input=features.npy budget=50 output=picks

A Hydra app on ``conf/select.yaml`` that reuses the ``selector`` and ``features`` config groups.
It writes selection.csv, label_studio.json, contact_sheet.png, skipped.csv and summary.json
into ``output`` (see :func:`nfpf.app.select_images.select_images` and docs/select.md) and prints a
short summary. Bad input ends with a one-line error and exit status 2, before any output is
written (Ctrl-C: one line, status 130; README, "Exit codes"). Hydra writes nothing (no
outputs/ folder, no .hydra/, no log file).
"""

from __future__ import annotations

import logging
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nfpf.cli.exit_codes import EXIT_USAGE, call_hydra_main, mark_command_line_accepted
from nfpf.core.api import CONFIG_SEARCH_PATH

log = logging.getLogger("nfpf.select")

USAGE = "usage: nfpf-select input=<folder or feature file> budget=<int> output=<folder> " \
        "[selector=<name>] [features=<name>] [key=value ...]"


def run_select(cfg: DictConfig, selector_name: str | None = None,
               features_name: str | None = None):
    """Run one selection from a composed ``select`` config; returns a ``SelectResult``."""
    from nfpf.app.select_images import SelectError, select_images

    missing = [k for k in ("input", "budget", "output") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise SelectError(f"missing required option(s): {' '.join(f'{k}=...' for k in missing)}\n"
                          f"{USAGE}")
    container = OmegaConf.to_container(cfg, resolve=True)
    return select_images(
        container["input"], container["budget"], container["output"],
        selector=container["selector"],
        features=container["features"],
        selector_name=selector_name,
        features_name=features_name,
        images={key: container[key] for key in ("image_size", "mode", "resize", "num_workers")},
        seed=container["seed"],
        n_classes=container["n_classes"],
        cache=container["cache"],
        cache_dir=container["cache_dir"],
        overwrite=container["overwrite"],
        transform_features=container["transform_features"],
        label_studio=container["label_studio"],
        contact_sheet=container["contact_sheet"],
        progress=container["progress"],
    )


@hydra.main(version_base="1.3", config_path=CONFIG_SEARCH_PATH, config_name="select")
def hydra_main(cfg: DictConfig) -> None:
    from nfpf.app.select_images import SelectError

    mark_command_line_accepted()
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    choices = HydraConfig.get().runtime.choices
    try:
        result = run_select(cfg, choices.get("selector"), choices.get("features"))
    except SelectError as error:
        print(f"nfpf-select: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    print(result.summary_text())


def main() -> None:
    """``nfpf-select``, with the exit statuses of :mod:`nfpf.cli.exit_codes`."""
    call_hydra_main(hydra_main, lambda: "nfpf-select: interrupted; nothing was written")


if __name__ == "__main__":
    main()
