"""The NFPF method: the closed-form autoencoder (:mod:`~nfpf.method.sflm`), the
Reconstruction Difference (:mod:`~nfpf.method.rd`), the initial seeds and PCA
(:mod:`~nfpf.method.seeding`), row-batch access to a pool (:mod:`~nfpf.method.rows`), the
progressive selection (:mod:`~nfpf.method.progressive`, :class:`NFPF`) and its variant NFPF+
(:mod:`~nfpf.method.plus`), plus the SFLM as a Lightning module."""

from nfpf.method.plus import NFPFPlus
from nfpf.method.progressive import NFPF

__all__ = ["NFPF", "NFPFPlus"]
