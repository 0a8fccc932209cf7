"""A selector's defaults have one home, its constructor: every value a selector config
writes (``conf/selector/**.yaml``, globbed, so a new config is covered) equals it, or the
config says what it replaces.

- A method's config (``conf/selector/<name>.yaml``, ``al/<name>.yaml``): each value is the
  constructor's default; one that is not carries the comment ``# <Class>: <default>`` (the
  class's name and the value it replaces), followed by why.
- An ablation (``ablation/<name>.yaml``) is its method's file plus its own keys on top
  (``defaults: [/selector/<method>@_here_, _self_]``); each own key differs from the method's
  value and says which value it replaces, ``# <method>.yaml: <value>``.

The comments are checked too: the value a comment says is replaced is the one that is.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.utils import get_class
from omegaconf import OmegaConf

from nfpf.core.api import CONFIG_DIR, load_selector_config, selector_entry

SELECTOR_DIR = CONFIG_DIR / "selector"
NAMES = sorted(p.relative_to(SELECTOR_DIR).with_suffix("").as_posix()
               for p in SELECTOR_DIR.rglob("*.yaml"))
#: A comment naming the value a key replaces: "<origin>: <value>" at its start (the value
#: a YAML scalar or a [flow, list]; a comma, semicolon or space ends it).
REPLACES = re.compile(r"^(?P<origin>[A-Za-z_][\w.]*): (?P<value>\[[^\]]*\]|[^\s,;]+)")


def comments(path: Path) -> dict[str, str]:
    """The trailing comment of each top-level key of a YAML file ('' when none)."""
    found = {}
    for line in path.read_text().splitlines():
        key = re.match(r"^(\w+):", line)
        if key:
            found[key.group(1)] = line.split("#", 1)[1].strip() if "#" in line else ""
    return found


def plain(value: Any) -> Any:
    """Sequences as lists (a YAML file has no tuples), recursively."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (1 is not 1.0, True is not 1)."""
    a, b = plain(a), plain(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def origin_of(name: str) -> tuple[str, dict[str, Any]]:
    """What a config's values are measured against: (its name in a comment, its values)."""
    entry = selector_entry(name)
    if entry.extends is not None:
        return f"{Path(entry.extends).name}.yaml", OmegaConf.to_container(
            OmegaConf.create(load_selector_config(entry.extends)))
    parameters = inspect.signature(get_class(entry.target)).parameters.values()
    return get_class(entry.target).__name__, {
        p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("name", NAMES)
def test_selector_config_values_are_the_constructors_or_say_what_they_replace(name):
    path = SELECTOR_DIR / f"{name}.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(path))
    values = OmegaConf.to_container(OmegaConf.create(load_selector_config(name)))  # composed
    origin, defaults = origin_of(name)
    own = [key for key in raw if key not in ("defaults", "_target_")]
    notes = comments(path)
    problems = []
    for key in own:
        if key not in defaults:
            problems.append(f"{key} is not a parameter with a default of {origin}")
            continue
        replaced = REPLACES.match(notes.get(key, ""))
        named = replaced is not None and replaced.group("origin") == origin
        if same(values[key], defaults[key]):
            if selector_entry(name).extends is not None:
                problems.append(f"{key}={values[key]!r} is {origin}'s value: an ablation "
                                f"holds only what it changes")
            continue
        if not named:
            problems.append(f"{key}={values[key]!r} is not {origin}'s {defaults[key]!r}: "
                            f"write `# {origin}: {json.dumps(plain(defaults[key]))}` "
                            f"after it, and why")
        elif not same(yaml.safe_load(replaced.group("value")), defaults[key]):
            problems.append(f"{key}: the comment says {origin}'s value is "
                            f"{replaced.group('value')}; it is {defaults[key]!r}")
    assert problems == [], f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("ablation/")])
def test_an_ablation_is_its_method_with_its_own_keys_on_top(name):
    raw = OmegaConf.to_container(OmegaConf.load(SELECTOR_DIR / f"{name}.yaml"))
    method = selector_entry(name).extends
    assert raw["defaults"] == [f"/selector/{method}@_here_", "_self_"]
    assert "_target_" not in raw
    assert load_selector_config(name) == {**load_selector_config(method),
                                          **{k: v for k, v in raw.items() if k != "defaults"}}


def test_the_check_sees_an_undeclared_and_a_stale_difference(tmp_path, monkeypatch):
    """A hand-made config: k differs from NFPF's default without a word, C with a comment
    naming the wrong default, ref_hidden is NFPF's own."""
    import nfpf.core.api

    folder = tmp_path / "selector"
    folder.mkdir()
    (folder / "nfpf.yaml").write_text("_target_: nfpf.method.NFPF\n"
                                      "k: 7              # samples per round\n"
                                      "C: 0.5            # NFPF: 0.1, a stale comment\n"
                                      "ref_hidden: 1800  # NFPF: 1800\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(nfpf.core.api, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(this, "SELECTOR_DIR", folder)
    monkeypatch.setattr(this, "load_selector_config", lambda name: OmegaConf.to_container(
        OmegaConf.load(folder / f"{name}.yaml")))
    selector_entry.cache_clear()
    try:
        with pytest.raises(AssertionError) as caught:
            test_selector_config_values_are_the_constructors_or_say_what_they_replace("nfpf")
    finally:
        selector_entry.cache_clear()
    message = str(caught.value).splitlines()[0]
    assert message == ("nfpf: k=7 is not NFPF's 10: write `# NFPF: 10` after it, and why; "
                       "C: the comment says NFPF's value is 0.1; it is 0.01")
