"""Diagnose NFPF's picks on a development set (issue 9): accuracy, class histogram, RD per class.

Selectors never see labels: selection runs on ``dataset.pool_view`` (features and images only);
the labels are read here, after selection, to evaluate and to describe the picks.

    python experiments/benchmarks/diagnose_nfpf.py --dataset mnist --budgets 100 --seeds 0 1 2 \
        --methods nfpf_faithful nfpf random nfpf_plus --out docs --cache <scratch dir>

Methods: nfpf_faithful, nfpf, random, typiclust, coreset, nfpf_plus; ``nfpf:key=value,...`` and
``nfpf_plus:key=value,...`` set selector options (the ablations), e.g. ``nfpf:score=mse``.
Writes ``<out>/figures/diagnose_<dataset>.json`` (accuracies, histograms, RD per class) and small
figures under ``<out>/figures/``. Selections are cached as .npy under ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("diagnose_nfpf")

MNIST_SEEDING = {"seed_features": "pca", "seed_pca_components": 50, "progress": False}


def make_selector(name: str):
    """Selector instance for a method name of this diagnosis (``nfpf_plus:key=value,...``)."""
    from nfpf.method.progressive import NFPF

    if name == "nfpf_faithful":
        return NFPF(faithful=True, **MNIST_SEEDING)
    if name == "nfpf" or name.startswith("nfpf:"):  # nfpf:key=value,... = an ablation
        return NFPF(**{**MNIST_SEEDING, **_options(name)})
    if name == "random":
        from nfpf.baselines.simple import Random

        return Random()
    if name == "typiclust":
        from nfpf.baselines.typiclust import TypiClust

        return TypiClust()
    if name == "coreset":
        from nfpf.baselines.coreset import Coreset

        return Coreset()
    if name.startswith("nfpf_plus"):
        from nfpf.method.plus import NFPFPlus

        return NFPFPlus(**{"progress": False, **_options(name)})
    raise ValueError(f"unknown method {name!r}")


def _options(name: str) -> dict:
    """Keyword arguments of a method name ``selector:key=value,key=value``."""
    if ":" not in name:
        return {}
    return {key: _parse(value) for key, value in
            (item.split("=", 1) for item in name.split(":", 1)[1].split(","))}


def _parse(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(value.lower(), value)


def evaluate(Xp, yp, Xt, yt, idx) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    out = {}
    if len(np.unique(yp[idx])) < 2:
        return {"logreg": float("nan"), "knn1": float("nan")}
    lr = LogisticRegression(max_iter=1000).fit(Xp[idx], yp[idx])
    out["logreg"] = float((lr.predict(Xt) == yt).mean() * 100)
    nn = KNeighborsClassifier(1).fit(Xp[idx], yp[idx])
    out["knn1"] = float((nn.predict(Xt) == yt).mean() * 100)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--budgets", type=int, nargs="+", default=[100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["nfpf_faithful", "nfpf", "random"])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--cache", default=None, help="default: <tempdir>/nfpf_diag")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from nfpf.data import load_dataset

    ds = load_dataset(args.dataset)
    pool = ds.pool_view(ds.flat("pool"))
    Xp = ds.flat("pool") * 2 - 1
    Xt = ds.flat("test") * 2 - 1
    yp, yt = ds.pool_labels, ds.test_labels
    K = ds.n_classes
    import tempfile

    cache = Path(args.cache or Path(tempfile.gettempdir()) / "nfpf_diag")
    cache.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.out) / "figures" / f"diagnose_{args.dataset}.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    results["pool_histogram"] = (np.bincount(yp, minlength=K) / len(yp)).round(4).tolist()
    ref_errors = None
    for B in args.budgets:
        for m in args.methods:
            # faithful NFPF ignores the run seed (quirk Q3): one selection serves every seed
            seeds = [0] if m == "nfpf_faithful" else args.seeds
            rows = []
            for s in seeds:
                f = cache / f"{args.dataset}_{m.replace(':', '_').replace(',', '_')}_B{B}_s{s}.npy"
                sel = None
                if f.exists():
                    idx = np.load(f)
                else:
                    sel = make_selector(m)
                    t0 = time.perf_counter()
                    idx = sel.select(pool, B, seed=s)
                    logger.info("%s B=%d seed=%d: %.1fs", m, B, s, time.perf_counter() - t0)
                    np.save(f, idx)
                    if ref_errors is None and getattr(sel, "reference_errors_", None) is not None \
                            and m == "nfpf_faithful":
                        ref_errors = sel.reference_errors_
                        np.save(cache / f"{args.dataset}_ref_errors.npy", ref_errors)
                acc = evaluate(Xp, yp, Xt, yt, idx)
                hist = np.bincount(yp[idx], minlength=K).tolist()
                row = {"seed": s, **acc, "hist": hist}
                if m.startswith("nfpf"):  # NFPF returns its seeds first: floor(0.3 B) of them
                    n_seed = int(np.floor(0.3 * B + 1e-9))
                    row["seed_hist"] = np.bincount(yp[idx[:n_seed]], minlength=K).tolist()
                    row["progressive_hist"] = np.bincount(yp[idx[n_seed:]], minlength=K).tolist()
                rows.append(row)
                logger.info("%s B=%d s=%d %s hist=%s", m, B, s, acc, hist)
            lr = np.array([r["logreg"] for r in rows])
            nn = np.array([r["knn1"] for r in rows])
            extra = {}
            if "seed_hist" in rows[0]:
                extra = {h: np.mean([r[h] for r in rows], 0).round(2).tolist()
                         for h in ("seed_hist", "progressive_hist")}
            results[f"{m}|B{B}"] = {**extra,
                "logreg": [float(lr.mean()), float(lr.std())],
                "knn1": [float(nn.mean()), float(nn.std())],
                "hist_mean": np.mean([r["hist"] for r in rows], 0).round(2).tolist(),
                "runs": rows,
            }
    # RD view: reference error (normalised over the pool) per class
    ref_file = cache / f"{args.dataset}_ref_errors.npy"
    if ref_file.exists():
        e = np.load(ref_file)
        e = (e - e.min()) / (e.max() - e.min())
        results["ref_error_per_class"] = {
            str(c): [float(np.percentile(e[yp == c], q)) for q in (10, 50, 90)] for c in range(K)
        }
        seed_file = cache / f"{args.dataset}_nfpf_faithful_B{min(args.budgets)}_s0.npy"
        if seed_file.exists():
            results["first_round_rd_per_class"] = first_round_rd(
                pool.pixels(), yp, np.load(ref_file),
                np.load(seed_file)[:int(np.floor(0.3 * min(args.budgets) + 1e-9))], K)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1))
    logger.info("wrote %s", out_json)
    if not args.no_figures:
        figures(results, ds, cache, Path(args.out) / "figures", args.dataset)


def first_round_rd(X, y, e_ref, seeds, K) -> dict[str, list[float]]:
    """RD (pearson, released normalisation over the scored set) of every pool sample against
    NFPF's first current SFLM (L = 11, fitted on the seeds): 10/50/90th percentile per class."""
    from nfpf.method.rd import minmax_normalise
    from nfpf.method.sflm import SFLM, draw_weights

    w, b = draw_weights(11, X.shape[1], np.random.default_rng(42))
    cur = SFLM(11, "sine", 0, 1e-2, 1, input_weights=w, bias=b, check_finite=False)
    cur.fit(X[seeds])
    rd = cur.errors(X, kind="pearson") - minmax_normalise(e_ref)
    return {str(c): [round(float(np.percentile(rd[y == c], q)), 4) for q in (10, 50, 90, 99)]
            + [round(float((rd[y == c] >= np.percentile(rd, 99)).mean() * 100), 2)]
            for c in range(K)}


def figures(results, ds, cache, fig_dir, name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    K = ds.n_classes
    # one panel per budget; the plain methods only (ablations, "method:key=value", are tables)
    keys = [k for k in results if "|B" in k and ":" not in k]
    budgets = sorted({int(k.split("|B")[1]) for k in keys})
    if budgets:
        fig, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.2), dpi=80,
                                 sharey=True, squeeze=False)
        pool = np.asarray(results["pool_histogram"])
        for ax, B in zip(axes[0], budgets, strict=True):
            ax.plot(np.arange(K), pool, color="0.6", lw=4, label="pool")
            for k in (k for k in keys if k.endswith(f"|B{B}")):
                h = np.asarray(results[k]["hist_mean"], dtype=float)
                ax.plot(np.arange(K), h / h.sum(), marker="o", ms=3, lw=1, label=k.split("|")[0])
            ax.set_title(f"B = {B}")
            ax.set_xticks(np.arange(K))
            ax.set_xlabel("class")
        axes[0][0].set_ylabel("fraction of picks (mean over seeds)")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(fig_dir / f"diagnose_{name}_hist.png")
        plt.close(fig)
    ref_file = cache / f"{name}_ref_errors.npy"
    if ref_file.exists():
        e = np.load(ref_file)
        yp = ds.pool_labels
        fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
        ax.boxplot([e[yp == c] for c in range(K)], showfliers=False)
        ax.set_xticklabels([str(c) for c in range(K)])
        ax.set_xlabel("class")
        ax.set_ylabel("reference SFLM MSE")
        fig.tight_layout()
        fig.savefig(fig_dir / f"diagnose_{name}_ref_error.png")
        plt.close(fig)


if __name__ == "__main__":
    main()
