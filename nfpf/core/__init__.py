"""The core every other layer builds on: the label-free :class:`Pool`, the :class:`Selector`
interface, the selector registry and :func:`select` (:mod:`nfpf.core.api`), and the compute
services selectors share (GPU kernels, devices, Lightning Trainers, memoisation, threads)."""

from nfpf.core.selection import Pool, RankingSelector, Selector

__all__ = ["Pool", "RankingSelector", "Selector"]
