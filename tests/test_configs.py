"""Every config composes, and every selector/feature/classifier config instantiates.

A typo in a YAML file, or a documented command that no longer composes, fails here, not in
a user's sweep.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hydra_plugins.nfpf_launchers.slurm import register_schema as register_slurm_schema
from nfpf.core.api import CONFIG_DIR, available_selectors
from nfpf.core.selection import Selector

# conf/hydra/launcher/*.yaml spell out the launcher plugins' schemas in full (as nfpf-run
# says, Hydra's notice about matching them by name is not actionable)
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")

def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        register_slurm_schema()  # as nfpf-run does: the SLURM launcher's keys
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiments_compose(experiment):
    cfg = compose_with(f"experiment={experiment}")
    assert cfg.experiment_name == experiment
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if params is not None:
        OmegaConf.to_container(params, resolve=True)


@pytest.mark.parametrize("selector", available_selectors())
def test_selectors_instantiate(selector):
    cfg = compose_with(f"selector={selector}")
    assert isinstance(instantiate(cfg.selector), Selector)


@pytest.mark.parametrize("variant", sorted(
    f"ablation/{p.stem}" for p in (CONFIG_DIR / "selector" / "ablation").glob("*.yaml")))
def test_ablation_variants_instantiate(variant):
    cfg = compose_with(f"selector={variant}")
    assert isinstance(instantiate(cfg.selector), Selector)


@pytest.mark.parametrize("features", group_options("features"))
def test_features_instantiate(features):
    cfg = compose_with(f"features={features}")
    space = instantiate(cfg.features)
    assert hasattr(space, "fit_transform") and hasattr(space, "transform")


@pytest.mark.parametrize("classifier", group_options("classifier"))
def test_classifiers_instantiate(classifier):
    cfg = compose_with(f"classifier={classifier}")
    model = instantiate(cfg.classifier)
    assert hasattr(model, "fit") and hasattr(model, "predict")


@pytest.mark.parametrize("dataset", group_options("dataset"))
def test_datasets_compose(dataset):
    cfg = compose_with(f"dataset={dataset}")
    assert cfg.dataset._target_ == "nfpf.data.load_dataset"
    assert cfg.dataset.name  # loader name resolved


@pytest.mark.parametrize("launcher", group_options("hydra/launcher"))
def test_launchers_compose(launcher):
    cfg = compose_with(f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")


def test_quickstart_is_the_default_and_sweeps_every_selector():
    cfg = compose_with()
    assert cfg.experiment_name == "quickstart"
    assert cfg.hydra.sweeper.params.selector == "glob(*)"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"


def test_unknown_selector_lists_known_ones():
    from nfpf.core.api import make_selector

    with pytest.raises(ValueError, match=r"Known selectors: .*coreset"):
        make_selector("no_such_method")


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``nfpf-run`` command of README.md and docs/*.md: (where, its arguments)."""
    import re
    import shlex

    root = CONFIG_DIR.parent
    commands = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            start, text = i, lines[i].strip()
            while text.endswith("\\") and i + 1 < len(lines):  # shell continuation lines
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            i += 1
            found = [text] if text.startswith("nfpf-run") else []
            found += re.findall(r"`(nfpf-run [^`]*)`", text)  # inline in the prose
            for command in found:
                command = re.sub(r"<[^>]*>", "placeholder", command)  # <scratch>, ...
                args = shlex.split(command, comments=True)[1:]
                commands.append((f"{path.name}:{start + 1}", args))
    return commands


@pytest.mark.parametrize("where,args", documented_commands(),
                         ids=[where for where, _ in documented_commands()])
def test_documented_commands_compose(where, args):
    """A command the docs show composes: no unknown group, option or key, no ``+`` where a
    default exists; a sweep composes with the first value of each swept parameter."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    overrides = [a for a in args if not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    single = []
    for text, override in zip(overrides, parsed, strict=True):
        if isinstance(override.value(), Glob):
            continue  # glob(*) sweeps a group's options: each composes in its own test
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            single.append(f"{override.get_key_element()}={first}")
        else:
            single.append(text)
    cfg = compose_with(*single)
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(plain, resolve=True)  # every interpolation resolves
