"""ALMS: Deep Unsupervised Active Learning via Matrix Sketching (Li et al., IEEE TIP 2021).

An autoencoder embeds the pool (Z = f(X), n × p). A Frequent-Directions sketch S (ℓ × p) of
Z summarises its main directions; instead of reconstructing the whole pool (DUAL's n × n
self-expression), ALMS learns a selection matrix Q (n × ℓ) with S ≈ QᵀZ, so each sketch
row is a combination of a few samples, under a penalty Σᵢ maxⱼ |Qᵢⱼ| that switches whole
samples off. An auxiliary self-supervised task -- telling real samples from noisy copies
(Gaussian noise at a fixed SNR) -- shapes the encoder. Samples are ranked by the sums of
their rows of Q (the released code's rule) and the top B are selected.

Terms, weights, SNR, learning rates and epochs follow the authors' released code; the parts
it does not show (its model file is not public) are our reading, listed in
docs/baselines_gradient.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch
from torch import nn

from nfpf.baselines.autoencoder import (
    AutoencoderRanker,
    FullBatchModule,
    MLPAutoencoder,
    fit_full_batch,
    reset_linear_,
)
from nfpf.core.selection import check_choice, check_param

__all__ = ["ALMS", "ALMSModule", "alms_scores", "frequent_directions", "noisy_copies"]

log = logging.getLogger(__name__)

_SCORES = ("sum", "max_abs")


def frequent_directions(a: torch.Tensor, ell: int) -> torch.Tensor:
    """Frequent-Directions sketch (Liberty, KDD 2013) of the rows of ``a``.

    The variant of the ALMS code: a buffer of ``ell`` rows is filled with incoming rows;
    when it is full, its SVD ``U diag(σ) Vᵀ`` is taken and it is replaced by
    ``diag(sqrt(max(σ² − σ²_{⌊ℓ/2⌋}, 0))) Vᵀ``, which zeroes at least half of its rows.
    Rows are inserted block-wise (as many as there are free rows), which gives exactly the
    row-by-row algorithm's result with one SVD per fill instead of a Python step per row.

    Parameters
    ----------
    a : Tensor of shape (n, p)
    ell : int
        Sketch rows, ℓ >= 1.

    Returns
    -------
    Tensor of shape (ell, p)
        Sketch B with ‖AᵀA − BᵀB‖₂ <= ‖A‖²_F / (ℓ − ⌊ℓ/2⌋) (≈ 2‖A‖²_F/ℓ) and BᵀB ⪯ AᵀA;
        exact (BᵀB = AᵀA) when no shrink was ever needed (n < ℓ) or when the buffer's
        rank never exceeds ⌊ℓ/2⌋ (e.g. p <= ⌊ℓ/2⌋).

    Time O(n·ℓ·p) (about 2n/ℓ SVDs of ℓ × p); memory O(ℓ·p).
    """
    a = a.detach()
    n, p = a.shape
    half = ell // 2
    sketch = a.new_zeros(ell, p)
    filled = 0
    start = 0
    while start < n:
        take = min(ell - filled, n - start)
        sketch[filled:filled + take] = a[start:start + take]
        filled += take
        start += take
        if filled < ell:
            break
        _, sigma, vt = torch.linalg.svd(sketch, full_matrices=False)
        delta = sigma[half] ** 2 if half < sigma.numel() else sigma.new_zeros(())
        shrunk = torch.sqrt(torch.clamp(sigma ** 2 - delta, min=0.0))
        keep = shrunk > 0
        filled = int(keep.sum())
        sketch = a.new_zeros(ell, p)
        sketch[:filled] = shrunk[keep, None] * vt[keep]
    return sketch


def noisy_copies(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The "fake" samples of ALMS' auxiliary task: X plus Gaussian noise at ``snr_db`` dB.

    Noise ~ N(0, 1), centred, rescaled so its variance is mean(X²) / 10^(snr_db/10) (the
    released code's recipe), added entry-wise.

    Parameters
    ----------
    x : ndarray of shape (n, d)
    snr_db : float
    rng : numpy Generator

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    x = np.asarray(x, dtype=np.float64)
    noise = rng.standard_normal(x.shape)
    noise -= noise.mean()
    signal_power = float((x ** 2).mean())
    target_std = np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
    std = noise.std()
    if std > 0:
        noise *= target_std / std
    return (x + noise).astype(np.float32)


class ALMSModule(FullBatchModule):
    """The ALMS network as a LightningModule: autoencoder, real/fake head and Q (n × ℓ).

    Phases, with squared errors summed over entries and CE the mean cross-entropy of the
    real (label 1) and fake (label 0) samples:

    - ``"pretrain"``: ‖X − g(Z)‖² + α·CE;
    - ``"joint"``: β(‖S − QᵀZ‖² + λ Σᵢ maxⱼ |Qᵢⱼ|) + ‖X − g(Z)‖² + γ‖Z − f(g(Z))‖² + α·CE,
      where S = FD(Z, ℓ) is recomputed from the current (detached) codes at every step.

    Parameters
    ----------
    n, in_dim, hidden_dims, latent_dim
        Pool size and autoencoder shape.
    sketch_size : int
        ℓ, rows of the sketch and columns of Q.
    alpha, beta, gamma, lam : float
        Weights α (real/fake task), β (sketch term), γ (latent consistency), λ (penalty on Q).
    pretrain_lr, lr : float
        Adam learning rates of the two phases.
    generator : torch.Generator
        Source of every initial weight.
    """

    def __init__(self, n: int, in_dim: int, hidden_dims: Sequence[int], latent_dim: int,
                 sketch_size: int, alpha: float, beta: float, gamma: float, lam: float,
                 pretrain_lr: float, lr: float, generator: torch.Generator):
        super().__init__()
        self.tag = "ALMS"
        self.ae = MLPAutoencoder(in_dim, hidden_dims, latent_dim)
        self.head = nn.Linear(latent_dim, 2)
        reset_linear_(self.ae, generator)
        reset_linear_(self.head, generator)
        self.q = nn.Parameter(torch.empty(n, sketch_size))
        nn.init.xavier_normal_(self.q, generator=generator)
        self.sketch_size = int(sketch_size)
        self.alpha, self.beta, self.gamma, self.lam = (float(alpha), float(beta),
                                                       float(gamma), float(lam))
        self.lrs = {"pretrain": float(pretrain_lr), "joint": float(lr)}

    def phase_parameters(self):
        if self.phase == "pretrain":
            return [p for name, p in self.named_parameters() if name != "q"]
        return self.parameters()

    def losses(self, x: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        z, x_hat = self.ae(x)
        recon = ((x_hat - x) ** 2).sum()
        logits = self.head(torch.cat([z, self.ae.encoder(fake)]))
        labels = torch.cat([torch.ones(len(x), dtype=torch.long, device=x.device),
                            torch.zeros(len(fake), dtype=torch.long, device=x.device)])
        # CE of real + CE of fake, each a mean over its samples (the code's two CE terms).
        ce = 2.0 * nn.functional.cross_entropy(logits, labels)
        if self.phase == "pretrain":
            loss = recon + self.alpha * ce
            return {"loss": loss, "recon": recon, "real_fake": ce}
        sketch = frequent_directions(z, self.sketch_size)
        sketch_err = ((sketch - self.q.T @ z) ** 2).sum()
        penalty = self.q.abs().amax(dim=1).sum()
        latent = ((z - self.ae.encoder(x_hat)) ** 2).sum()
        loss = (self.beta * (sketch_err + self.lam * penalty) + recon
                + self.gamma * latent + self.alpha * ce)
        return {"loss": loss, "recon": recon, "real_fake": ce, "sketch": sketch_err,
                "q_penalty": penalty, "latent": latent}


def alms_scores(q: np.ndarray, score: str = "sum") -> np.ndarray:
    """ALMS' per-sample score from the selection matrix.

    Parameters
    ----------
    q : ndarray of shape (n, ℓ)
        Q, with S ≈ QᵀZ (row i = sample i's weights in the ℓ sketch rows).
    score : {"sum", "max_abs"}
        "sum": Σⱼ Qᵢⱼ, the released code's ranking (sum over the sketch dimension, signs
        kept); "max_abs": maxⱼ |Qᵢⱼ|, the quantity the penalty shrinks.

    Returns
    -------
    ndarray of shape (n,)
    """
    q = np.asarray(q, dtype=np.float64)
    if score == "sum":
        return q.sum(axis=1)
    check_choice("score", score, _SCORES)
    return np.abs(q).max(axis=1)


class ALMS(AutoencoderRanker):
    """ALMS (TIP 2021): autoencoder + Frequent-Directions sketch; top-B rows of Q.

    Trains :class:`ALMSModule` with a ``pytorch_lightning.Trainer`` (full batch): first the
    autoencoder with the real/fake task, then everything jointly with the sketch term at
    half the learning rate (as the released code). Samples are ranked by :func:`alms_scores`
    and the top ``budget`` taken; the ranking does not depend on the budget, so a budget
    sweep trains once per seed (see :class:`~nfpf.core.selection.RankingSelector`).

    Parameters
    ----------
    hidden_dims : sequence of int
        Encoder hidden widths (decoder mirrored).
    latent_dim : int
        Width of the latent code Z.
    sketch_size : int
        ℓ, rows of the Frequent-Directions sketch (columns of Q).
    alpha, beta, gamma, lam : float
        Loss weights: real/fake task (0.1), sketch reconstruction (1), latent consistency
        (0.01), penalty on Q (10) -- the released code's values.
    snr_db : float
        Signal-to-noise ratio of the fake samples (5 dB).
    normalize_rows : bool
        Scale every sample to unit L2 norm before training (the released data loader does).
    score : {"sum", "max_abs"}
        Ranking rule, see :func:`alms_scores`.
    pretrain_epochs, epochs : int
        Full-batch Adam steps of pretraining (100) and joint fine-tuning (20).
    lr : float
        Pretraining learning rate; fine-tuning uses lr / 2.
    max_candidates, trainer, enable_progress_bar, num_threads
        See :class:`~nfpf.baselines.autoencoder.AutoencoderRanker`.

    Attributes
    ----------
    info_ : dict
        ``candidate_subset`` (its size, or None), ``sketch_size``, ``final_loss``.
    history_, scores_, candidates_
        See :class:`~nfpf.baselines.autoencoder.AutoencoderRanker`.

    Notes
    -----
    Time per epoch O(m·(d·h + h² + ℓ·p)) for the network and QᵀZ plus O(m·ℓ·p) for the
    sketch (about 2m/ℓ SVDs of ℓ × p), for m samples trained on, p = latent_dim, h = widest
    hidden layer; memory O(m·ℓ + m·d + m·h) (Q with gradient and Adam moments is 16·m·ℓ
    bytes: 10 MB at m = 5000, ℓ = 128).
    """

    def __init__(self, hidden_dims: Sequence[int] = (256, 256), latent_dim: int = 128,
                 sketch_size: int = 128, alpha: float = 0.1, beta: float = 1.0,
                 gamma: float = 0.01, lam: float = 10.0, snr_db: float = 5.0,
                 normalize_rows: bool = True, score: str = "sum", pretrain_epochs: int = 100,
                 epochs: int = 20, lr: float = 1e-3, max_candidates: int | None = 5000,
                 trainer: Mapping[str, Any] | None = None, enable_progress_bar: bool = False,
                 num_threads: int | None = 1):
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.sketch_size = sketch_size
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.lam = lam
        self.snr_db = snr_db
        self.normalize_rows = normalize_rows
        self.score = score
        self.pretrain_epochs = pretrain_epochs
        self.epochs = epochs
        self.lr = lr
        self.max_candidates = max_candidates
        self.trainer = trainer
        self.enable_progress_bar = enable_progress_bar
        self.num_threads = num_threads
        self.check_params()

    def check_params(self) -> None:
        super().check_params()
        check_param("sketch_size", self.sketch_size, low=1)
        for name in ("alpha", "beta", "gamma", "lam"):
            check_param(name, getattr(self, name), Real, low=0)
        check_param("snr_db", self.snr_db, Real, hint=" of decibels")
        check_choice("normalize_rows", self.normalize_rows, (True, False))
        check_choice("score", self.score, _SCORES)

    def _train(self, X: np.ndarray, n_classes: int | None, seed: int,
               ) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
        X = np.asarray(X, dtype=np.float64)
        if self.normalize_rows:
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            X = X / np.where(norms > 0, norms, 1.0)
        fake = noisy_copies(X, self.snr_db, np.random.default_rng(seed))
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        generator = torch.Generator().manual_seed(seed)
        # nn.Linear's constructor draws from the global RNG: leave its state untouched
        with torch.random.fork_rng(devices=[]):
            module = ALMSModule(x.shape[0], x.shape[1], self.hidden_dims, self.latent_dim,
                                self.sketch_size, self.alpha, self.beta, self.gamma, self.lam,
                                self.lr, self.lr / 2, generator)
        tensors = [x, torch.from_numpy(fake)]
        fit_full_batch(module, tensors, "pretrain", self.pretrain_epochs, self.trainer,
                       self.enable_progress_bar)
        fit_full_batch(module, tensors, "joint", self.epochs, self.trainer,
                       self.enable_progress_bar)
        scores = alms_scores(module.q.detach().cpu().numpy(), self.score)
        return scores, module.history, {"sketch_size": int(self.sketch_size)}
