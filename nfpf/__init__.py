"""nfpf: benchmarking unsupervised active learning, centred on NFPF (arXiv 2510.04939)."""

from nfpf.core.selection import Pool, Selector

__version__ = "0.1.0"

__all__ = ["Pool", "Selector", "__version__", "select", "select_with_oracle"]


def select(*args, **kwargs):
    """Choose what to label; see :func:`nfpf.core.api.select`."""
    from nfpf.core.api import select as _select

    return _select(*args, **kwargs)


def select_with_oracle(*args, **kwargs):
    """Choose what to label with a supervised AL strategy; see
    :func:`nfpf.active.select_with_oracle`."""
    from nfpf.active import select_with_oracle as _select_with_oracle

    return _select_with_oracle(*args, **kwargs)
