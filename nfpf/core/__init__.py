"""The core every other layer builds on: the label-free :class:`Pool`, the :class:`Selector`
interface and the validators (:mod:`nfpf.core.selection`), the one protocol every kind of
selector answers (:mod:`nfpf.core.protocol`), the selector registry and :func:`select`
(:mod:`nfpf.core.api`), and the compute services selectors share (GPU kernels, devices,
Lightning Trainers, memoisation, threads)."""

from nfpf.core.selection import Pool, RankingSelector, Selector

__all__ = ["Pool", "RankingSelector", "Selector"]
