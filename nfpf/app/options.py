"""The options of ``nfpf-select`` and every check that needs no reading of the input.

:func:`check_request` turns :func:`nfpf.app.select_images.select_images`' arguments into one
validated :class:`Request`, raising :class:`SelectError` with a one-line message naming the
option and the fix before any image is decoded or any output written.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nfpf.core.selection import Selector, check_budget, check_seed, check_whole
from nfpf.data.images import MODES, RESIZE_POLICIES, parse_image_size
from nfpf.features import FeatureSpace
from nfpf.io import cache_root

__all__ = [
    "DEFAULT_URL_PREFIX",
    "FEATURE_FILE_SUFFIXES",
    "OUTPUT_FILES",
    "ContactSheetOptions",
    "ImageOptions",
    "LabelStudioOptions",
    "Request",
    "SelectError",
    "check_request",
    "default_cache_dir",
    "is_within",
]

#: Every file ``select_images`` may write into the output folder.
OUTPUT_FILES = ("selection.csv", "label_studio.json", "contact_sheet.png", "skipped.csv",
                "summary.json")
#: Accepted feature-file types.
FEATURE_FILE_SUFFIXES = (".npy", ".csv", ".parquet")
#: Label Studio's URL of a file served from local storage, followed by the path relative to
#: ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
DEFAULT_URL_PREFIX = "/data/local-files/?d="


class SelectError(ValueError):
    """A problem with the input or the options, reported before any output is written."""


@dataclass(frozen=True)
class ImageOptions:
    """How the images of a folder are decoded (config keys of the same names).

    Attributes
    ----------
    image_size : int or (height, width), default 32
    mode : {"RGB", "L"}, default "RGB"
    resize : {"stretch", "center_crop", "pad"}, default "stretch"
    num_workers : int, default 4
        Decoding threads (0 or 1: in the main thread).
    """

    image_size: int | tuple[int, int] = 32
    mode: str = "RGB"
    resize: str = "stretch"
    num_workers: int = 4

    @property
    def size(self) -> tuple[int, int]:
        """``image_size`` as (height, width)."""
        return parse_image_size(self.image_size)

    def check(self) -> None:
        """Raise :class:`SelectError` for a bad value."""
        try:
            parse_image_size(self.image_size)
        except ValueError as err:
            raise SelectError(str(err)) from None
        if self.mode not in MODES:
            raise SelectError(f"mode must be one of {list(MODES)}; got {self.mode!r}.")
        if self.resize not in RESIZE_POLICIES:
            raise SelectError(f"resize must be one of {list(RESIZE_POLICIES)}; "
                              f"got {self.resize!r}.")
        try:
            check_whole("num_workers", self.num_workers, low=0)
        except ValueError as err:
            raise SelectError(str(err)) from None


@dataclass(frozen=True)
class LabelStudioOptions:
    """``label_studio.*``: image URL = ``url_prefix`` + path relative to ``document_root``
    (default: the folder that contains the input folder); ``image_key``: the task-data key."""

    url_prefix: str = DEFAULT_URL_PREFIX
    document_root: str | None = None
    image_key: str = "image"


@dataclass(frozen=True)
class ContactSheetOptions:
    """``contact_sheet.*``: at most ``max_images`` picks (the first by rank) in cells of
    ``thumb_size`` pixels, ``columns`` per row (default about sqrt(picks), at most 20)."""

    max_images: int = 400
    thumb_size: int = 96
    columns: int | None = None

    def check(self) -> None:
        """Raise :class:`SelectError` for a bad value."""
        try:
            check_whole("contact_sheet.max_images", self.max_images, low=1)
            check_whole("contact_sheet.thumb_size", self.thumb_size, low=1)
            check_whole("contact_sheet.columns", self.columns, low=1, also=(None,),
                        hint=" (None: about the square root of the picks)")
        except ValueError as err:
            raise SelectError(str(err)) from None


def _options(cls: type, values: Any, what: str) -> Any:
    """``values`` (None, a mapping of the fields, or an instance) as a ``cls`` instance."""
    if isinstance(values, cls):
        return values
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SelectError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}.")
    return cls(**values)


def default_cache_dir() -> Path:
    """``$NFPF_CACHE_DIR/select`` if that variable is set, else ``~/.cache/nfpf/select``."""
    return cache_root() / "select"


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (lexically)."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _abspath(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _realpath(path: Path) -> Path:
    return Path(os.path.realpath(path))


@dataclass(frozen=True)
class Request:
    """A validated selection request (see :func:`check_request`)."""

    input: str                       # as given, for the summary
    input_path: Path                 # absolute
    is_folder: bool
    budget: int
    seed: int
    n_classes: int | None
    output: Path                     # absolute
    staging_parent: Path             # an existing folder beside the output
    images: ImageOptions
    label_studio: LabelStudioOptions
    contact_sheet: ContactSheetOptions
    document_root: Path
    cache_dir: Path | None           # None: no cache
    selector: Selector
    method: str                      # the selector's name in the outputs
    space: FeatureSpace
    features_name: str
    features_config: Any             # what the feature cache key hashes
    transform_features: bool
    progress: bool

    @property
    def input_root(self) -> Path:
        """The folder relative feature-file paths and the default document root refer to."""
        return self.input_path if self.is_folder else self.input_path.parent


def _check_input(input: Any) -> Path:
    if input in (None, ""):
        raise SelectError("input is required: a folder of images or a feature file, "
                          "e.g. input=path/to/images.")
    path = _abspath(input)
    if not path.exists():
        raise SelectError(f"input {os.fspath(input)!r} does not exist (looked for {path}). "
                          f"Give a folder of images or a feature file "
                          f"({', '.join(FEATURE_FILE_SUFFIXES)}).")
    if not path.is_dir() and path.suffix.lower() not in FEATURE_FILE_SUFFIXES:
        raise SelectError(f"input={input} is a file of an unsupported type {path.suffix!r}: "
                          f"give a folder of images or a feature file "
                          f"({', '.join(FEATURE_FILE_SUFFIXES)}).")
    return path


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _check_writable(output: Any, parent: Path, out: Path) -> None:
    """Create and remove a file in ``parent`` (and in ``out`` when it exists)."""
    probe = parent / f".nfpf-select-probe-{secrets.token_hex(6)}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
        if out.exists():
            probe = out / probe.name
            probe.touch(exist_ok=False)
            probe.unlink()
    except OSError as err:
        raise SelectError(f"output={output} is not writable: cannot create a file in {probe.parent}"
                          f" ({err.strerror or err}). Choose a folder you can write to.") from None


def _check_output(output: Any, input_path: Path, overwrite: bool) -> tuple[Path, Path]:
    """Validate the output folder; return it and the existing folder the staging goes in."""
    if output in (None, ""):
        raise SelectError("output is required: the folder to write the picks into, "
                          "e.g. output=picks.")
    out = _abspath(output)
    if input_path.is_dir() and is_within(_realpath(out), _realpath(input_path)):
        raise SelectError(f"output={output} is inside the input folder {input_path}; the input "
                          f"folder is never written to. Choose an output outside it.")
    if out.exists():
        if not out.is_dir():
            raise SelectError(f"output={output} exists and is a file, not a folder. Choose a "
                              f"new folder name.")
        others = [p.name for p in out.iterdir()]
        if others and not overwrite:
            raise SelectError(
                f"output folder {out} already exists and is not empty ({len(others)} entries, "
                f"e.g. {sorted(others)[0]!r}). Choose a new folder, or pass overwrite=true to "
                f"replace nfpf-select's files in it ({', '.join(OUTPUT_FILES)}).")
        parent = out.parent
    else:
        parent = _nearest_existing(out.parent)
        if not parent.is_dir():
            raise SelectError(f"output={output}: {parent} is a file, so the output folder "
                              f"cannot be created below it.")
    _check_writable(output, parent, out)
    return out, parent


def _check_cache_dir(cache: bool, cache_dir: Any, input_path: Path) -> Path | None:
    if not (cache and input_path.is_dir()):
        return None
    location = _abspath(cache_dir) if cache_dir else default_cache_dir()
    if is_within(_realpath(location), _realpath(input_path)):
        raise SelectError(f"cache_dir={location} is inside the input folder, which is "
                          f"never written to. Choose another cache_dir.")
    return location


def _build_selector(selector: Any, name: str | None) -> tuple[Selector, str]:
    from hydra.errors import InstantiationException

    from nfpf.core.api import available_selectors, make_selector

    try:
        if isinstance(selector, Selector):
            return selector, name or type(selector).__name__
        if isinstance(selector, str):
            return make_selector(selector), name or selector
        if isinstance(selector, Mapping):
            from hydra.utils import instantiate
            from omegaconf import OmegaConf

            built = instantiate(OmegaConf.create(dict(selector)), _convert_="all")
            if not isinstance(built, Selector):
                raise SelectError(f"the selector config builds {type(built).__name__}, "
                                  f"not a Selector.")
            return built, name or type(built).__name__
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise SelectError(f"selector {name or ''}: {cause}") from None
    except ValueError as err:
        if isinstance(err, SelectError):
            raise
        raise SelectError(str(err)) from None
    raise SelectError(f"selector must be a name ({', '.join(available_selectors())}), a "
                      f"config with _target_, or a Selector; got {type(selector).__name__}.")


def _build_features(features: Any, name: str | None) -> tuple[FeatureSpace, str, Any]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nfpf.core.api import CONFIG_DIR

    if isinstance(features, FeatureSpace):
        config = {"class": type(features).__qualname__, "params": vars(features)}
        return features, name or type(features).__name__, json.loads(
            json.dumps(config, default=str))
    if isinstance(features, str):
        path = CONFIG_DIR / "features" / f"{features}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (CONFIG_DIR / "features").glob("*.yaml"))
            raise SelectError(f"Unknown feature space {features!r}. Known: {', '.join(known)}.")
        name, features = name or features, OmegaConf.to_container(OmegaConf.load(path))
    if isinstance(features, Mapping):
        config = dict(features)
        try:
            space = instantiate(OmegaConf.create(config), _convert_="all")
        except Exception as err:
            raise SelectError(f"features {name or ''}: {err.__cause__ or err}") from None
        if not isinstance(space, FeatureSpace):
            raise SelectError(f"the features config builds {type(space).__name__}, not a "
                              f"FeatureSpace.")
        return space, name or type(space).__name__, config
    raise SelectError(f"features must be a name, a config with _target_ or a FeatureSpace; "
                      f"got {type(features).__name__}.")


def check_request(input: Any, budget: Any, output: Any, **options: Any) -> Request:
    """Validate every argument of :func:`nfpf.app.select_images.select_images`.

    Parameters
    ----------
    input, budget, output : as given to ``select_images``
    **options
        All of its keyword arguments, by name (``selector``, ``features``,
        ``selector_name``, ``features_name``, ``images``, ``seed``, ``n_classes``,
        ``cache``, ``cache_dir``, ``overwrite``, ``transform_features``, ``label_studio``,
        ``contact_sheet``, ``progress``).

    Returns
    -------
    Request

    Raises
    ------
    SelectError
        The first bad value, with what to do about it; nothing has been read or written.
    """
    try:  # the pool's size is known once the input is read
        budget = check_budget(budget, None)
        seed = check_seed(options["seed"])
        n_classes = check_whole("n_classes", options["n_classes"], low=1, also=(None,))
    except ValueError as err:
        raise SelectError(str(err)) from None
    images = _options(ImageOptions, options["images"], "images")
    images.check()
    input_path = _check_input(input)
    out, staging_parent = _check_output(output, input_path, bool(options["overwrite"]))
    label_studio = _options(LabelStudioOptions, options["label_studio"], "label_studio")
    contact_sheet = _options(ContactSheetOptions, options["contact_sheet"], "contact_sheet")
    contact_sheet.check()
    input_root = input_path if input_path.is_dir() else input_path.parent
    document_root = (_abspath(label_studio.document_root) if label_studio.document_root
                     else input_root.parent)
    cache_dir = _check_cache_dir(options["cache"], options["cache_dir"], input_path)
    selector, method = _build_selector(options["selector"], options["selector_name"])
    space, features_name, features_config = _build_features(options["features"],
                                                            options["features_name"])
    return Request(
        input=os.fspath(input), input_path=input_path, is_folder=input_path.is_dir(),
        budget=budget, seed=seed, n_classes=n_classes, output=out,
        staging_parent=staging_parent, images=images, label_studio=label_studio,
        contact_sheet=contact_sheet, document_root=document_root, cache_dir=cache_dir,
        selector=selector, method=method, space=space, features_name=features_name,
        features_config=features_config, transform_features=bool(options["transform_features"]),
        progress=bool(options["progress"]),
    )
