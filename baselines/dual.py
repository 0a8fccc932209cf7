"""DUAL: Deep Unsupervised Active Learning (Li, Ma, Kang, Yuan, Zhang, Wang; IJCAI 2020).

An autoencoder maps the pool to latent codes Z (n × p). Between encoder and decoder sits a
*selection block* with two fully connected branches without bias:

- self-expression: Z ≈ C₁Z with C₁ (n × n, zero diagonal); the decoder reconstructs X from
  C₁Z, so the few samples whose columns of C₁ are non-zero must carry the whole pool;
- clustering: C₂Z ≈ M with C₂ (K × n) and M the K-means centres of the pretrained codes,
  so the picks also represent every cluster.

Both C₁ and C₂ carry an ℓ2,1 penalty on their columns (one column per sample), which
drives whole samples out of the representation. After training, sample j scores
minmax(‖C₁[:, j]‖²) + minmax(‖C₂[:, j]‖²) and the top B are selected. Loss terms, their
weights and the score follow the authors' released code; see docs/baselines_gradient.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from nfpf.baselines.autoencoder import (
    AutoencoderRanker,
    FullBatchModule,
    MLPAutoencoder,
    fit_full_batch,
    minmax,
    reset_linear_,
)
from nfpf.core.selection import check_param

__all__ = ["DUAL", "DUALModule", "dual_scores"]

log = logging.getLogger(__name__)


class DUALModule(FullBatchModule):
    """The DUAL network: autoencoder + selection block (C₁, C₂), as a LightningModule.

    Phases: ``"pretrain"`` fits the autoencoder alone (mean squared reconstruction error);
    ``"joint"`` fits everything on

        ‖X − g(C₁Z)‖² + λ(‖C₁‖₂,₁ + ‖C₂‖₂,₁) + γ(‖C₁Z − Z‖² + ‖C₂Z − M‖²)

    (squared errors summed over all entries, Z = f(X), ℓ2,1 = sum of column norms). The
    diagonal of C₁ is held at exactly zero (it starts at zero and is projected back to zero
    after every step), so no sample can express itself.

    Parameters
    ----------
    n : int
        Number of samples (rows of X).
    in_dim, hidden_dims, latent_dim
        Autoencoder shape (see :class:`MLPAutoencoder`).
    n_clusters : int
        K, rows of C₂.
    sparsity_weight : float
        λ, weight of the ℓ2,1 penalties.
    expression_weight : float
        γ, weight of the two self-expression errors.
    pretrain_lr, lr : float
        Adam learning rates of the two phases.
    generator : torch.Generator
        Source of every initial weight.
    """

    def __init__(self, n: int, in_dim: int, hidden_dims: Sequence[int], latent_dim: int,
                 n_clusters: int, sparsity_weight: float, expression_weight: float,
                 pretrain_lr: float, lr: float, generator: torch.Generator):
        super().__init__()
        self.tag = "DUAL"
        self.ae = MLPAutoencoder(in_dim, hidden_dims, latent_dim)
        reset_linear_(self.ae, generator)
        self.coef = nn.Parameter(torch.empty(n, n))
        self.coef_cluster = nn.Parameter(torch.empty(n_clusters, n))
        nn.init.xavier_normal_(self.coef, generator=generator)
        nn.init.xavier_normal_(self.coef_cluster, generator=generator)
        with torch.no_grad():
            self.coef.fill_diagonal_(0.0)
        self.register_buffer("centers", torch.zeros(n_clusters, latent_dim))
        self.sparsity_weight = float(sparsity_weight)
        self.expression_weight = float(expression_weight)
        self.lrs = {"pretrain": float(pretrain_lr), "joint": float(lr)}

    def phase_parameters(self):
        if self.phase == "pretrain":
            return self.ae.parameters()
        return self.parameters()

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.ae.encoder(x)
        if self.phase == "pretrain":
            recon = ((self.ae.decoder(z) - x) ** 2).mean()
            return {"loss": recon, "recon": recon}
        zc = self.coef @ z
        recon = ((self.ae.decoder(zc) - x) ** 2).sum()
        self_expr = ((zc - z) ** 2).sum()
        cluster_expr = ((self.coef_cluster @ z - self.centers) ** 2).sum()
        l21 = (torch.linalg.vector_norm(self.coef, dim=0).sum()
               + torch.linalg.vector_norm(self.coef_cluster, dim=0).sum())
        loss = (recon + self.sparsity_weight * l21
                + self.expression_weight * (self_expr + cluster_expr))
        return {"loss": loss, "recon": recon, "l21": l21, "self_expression": self_expr,
                "cluster_expression": cluster_expr}

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            self.coef.fill_diagonal_(0.0)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes Z = f(X), shape (n, latent_dim)."""
        return self.ae.encoder(x.to(self.centers.device))


def dual_scores(coef: np.ndarray, coef_cluster: np.ndarray) -> np.ndarray:
    """DUAL's per-sample score from its two selection matrices.

    Parameters
    ----------
    coef : ndarray of shape (n, n)
        C₁, self-expression coefficients (Z ≈ C₁Z; column j = what sample j contributes).
    coef_cluster : ndarray of shape (K, n)
        C₂, cluster coefficients (M ≈ C₂Z).

    Returns
    -------
    ndarray of shape (n,)
        minmax(Σᵢ C₁[i, j]²) + minmax(Σₖ C₂[k, j]²): squared column norms, each scaled to
        [0, 1] over the pool, then summed (the released code's rule).
    """
    s1 = np.einsum("ij,ij->j", coef, coef, dtype=np.float64)
    s2 = np.einsum("kj,kj->j", coef_cluster, coef_cluster, dtype=np.float64)
    return minmax(s1) + minmax(s2)


class DUAL(AutoencoderRanker):
    """DUAL (IJCAI 2020): autoencoder + self-expressive selection block, top-B by column norms.

    Trains :class:`DUALModule` with a ``pytorch_lightning.Trainer`` (full batch): first the
    autoencoder alone, then K-means (K clusters) on its codes gives the centres M, then the
    joint objective. Samples are ranked by :func:`dual_scores` and the top ``budget`` taken;
    the ranking does not depend on the budget, so a budget sweep trains once per seed (see
    :class:`~nfpf.core.selection.RankingSelector`).

    Parameters
    ----------
    hidden_dims : sequence of int
        Encoder hidden widths (decoder mirrored).
    latent_dim : int
        Width of the latent code Z.
    n_clusters : int or None
        K for the clustering branch; ``None``: the pool's number of classes (a count, never
        a label) or 10 when unknown. Capped at the number of samples.
    sparsity_weight : float
        λ on ‖C₁‖₂,₁ + ‖C₂‖₂,₁ (``p_q`` in the released code).
    expression_weight : float
        γ on ‖C₁Z − Z‖² + ‖C₂Z − M‖² (``p_Rq`` in the released code).
    pretrain_epochs, epochs : int
        Full-batch Adam steps of autoencoder pretraining and of joint training.
    pretrain_lr, lr : float
        Adam learning rates of the two phases.
    max_candidates, trainer, enable_progress_bar, num_threads
        See :class:`~nfpf.baselines.autoencoder.AutoencoderRanker`.

    Attributes
    ----------
    info_ : dict
        ``candidate_subset`` (its size, or None), ``n_clusters``, ``final_loss``.
    history_, scores_, candidates_
        See :class:`~nfpf.baselines.autoencoder.AutoencoderRanker`.

    Notes
    -----
    Time per joint epoch O(m²·p + m·(d·h + K·p)) for m samples trained on, p = latent_dim,
    h = widest hidden layer; memory O(m²) (C₁ with its gradient and two Adam moments, about
    16·m² bytes: 64 MB at m = 2000) plus O(m·d). Pretraining and scoring are O(m·d·h) and
    O(m²).
    """

    def __init__(self, hidden_dims: Sequence[int] = (256, 128), latent_dim: int = 64,
                 n_clusters: int | None = None, sparsity_weight: float = 1.0,
                 expression_weight: float = 1.0, pretrain_epochs: int = 100,
                 epochs: int = 100, pretrain_lr: float = 1e-3, lr: float = 1e-3,
                 max_candidates: int | None = 2000, trainer: Mapping[str, Any] | None = None,
                 enable_progress_bar: bool = False, num_threads: int | None = 1):
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.n_clusters = n_clusters
        self.sparsity_weight = sparsity_weight
        self.expression_weight = expression_weight
        self.pretrain_epochs = pretrain_epochs
        self.epochs = epochs
        self.pretrain_lr = pretrain_lr
        self.lr = lr
        self.max_candidates = max_candidates
        self.trainer = trainer
        self.enable_progress_bar = enable_progress_bar
        self.num_threads = num_threads
        self.check_params()

    def check_params(self) -> None:
        super().check_params()
        check_param("n_clusters", self.n_clusters, low=1, also=(None,),
                    hint=" (None: the pool's number of classes)")
        check_param("sparsity_weight", self.sparsity_weight, Real, low=0)
        check_param("expression_weight", self.expression_weight, Real, low=0)
        check_param("pretrain_lr", self.pretrain_lr, Real, low=0, closed="neither")

    def _train(self, X: np.ndarray, n_classes: int | None, seed: int,
               ) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        n = x.shape[0]
        k = int(min(self.n_clusters or n_classes or 10, n))
        generator = torch.Generator().manual_seed(seed)
        # nn.Linear's constructor draws from the global RNG: leave its state untouched
        with torch.random.fork_rng(devices=[]):
            module = DUALModule(n, x.shape[1], self.hidden_dims, self.latent_dim, k,
                                self.sparsity_weight, self.expression_weight,
                                self.pretrain_lr, self.lr, generator)
        fit_full_batch(module, [x], "pretrain", self.pretrain_epochs, self.trainer,
                       self.enable_progress_bar)
        z = module.encode(x).cpu().numpy().astype(np.float64)
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z)
        with torch.no_grad():
            module.centers.copy_(torch.from_numpy(km.cluster_centers_).float())
        fit_full_batch(module, [x], "joint", self.epochs, self.trainer,
                       self.enable_progress_bar)
        scores = dual_scores(module.coef.detach().cpu().numpy(),
                             module.coef_cluster.detach().cpu().numpy())
        return scores, module.history, {"n_clusters": k}
