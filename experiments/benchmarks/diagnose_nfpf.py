"""Diagnose NFPF's picks on a development set: accuracy, class histogram, RD per class.

Selectors never see labels: selection runs on ``dataset.pool_view`` (features and images only);
the labels are read here, after selection, to evaluate and to describe the picks.

    python experiments/benchmarks/diagnose_nfpf.py --dataset mnist --budgets 100 --seeds 0 1 2 \
        --methods nfpf_faithful nfpf random nfpf_plus --out docs --cache <scratch dir>

Methods: any selector name (nfpf, random, typiclust, coreset, nfpf_plus, ...) and nfpf_faithful
(``ablation/nfpf_faithful``); ``name:key=value,...`` sets selector options (the ablations), e.g.
``nfpf:score=mse``. NFPF seeds by K-means on PCA-50 of the pixels here.
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
    from nfpf.core.api import make_selector as make_library_selector

    base = name.split(":", 1)[0]
    options = {"progress": False} if base == "nfpf_plus" else {}
    if base in ("nfpf", "nfpf_faithful"):
        options = dict(MNIST_SEEDING)
    config = "ablation/nfpf_faithful" if base == "nfpf_faithful" else base
    return make_library_selector(config, **{**options, **_options(name)})


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--budgets", type=int, nargs="+", default=[100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["nfpf_faithful", "nfpf", "random"])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--cache", default=None, help="default: <tempdir>/nfpf_diag")
    ap.add_argument("--no-figures", action="store_true")
    return ap.parse_args(argv)


def cached_selection(method: str, budget: int, seed: int, pool, cache: Path,
                     dataset: str) -> np.ndarray:
    """The picks of ``method``, from ``cache`` when there; a faithful NFPF run also saves
    its reference errors there (``<dataset>_ref_errors.npy``)."""
    name = method.replace(":", "_").replace(",", "_")
    path = cache / f"{dataset}_{name}_B{budget}_s{seed}.npy"
    if path.exists():
        return np.load(path)
    selector = make_selector(method)
    t0 = time.perf_counter()
    idx = selector.select(pool, budget, seed=seed)
    logger.info("%s B=%d seed=%d: %.1fs", method, budget, seed, time.perf_counter() - t0)
    np.save(path, idx)
    ref_path = cache / f"{dataset}_ref_errors.npy"
    if method == "nfpf_faithful" and not ref_path.exists() \
            and getattr(selector, "reference_errors_", None) is not None:
        np.save(ref_path, selector.reference_errors_)
    return idx


def describe_picks(method: str, budget: int, seed: int, idx: np.ndarray, data: dict,
                   K: int) -> dict:
    """Accuracies and class histograms of one selection (NFPF's seeds apart)."""
    yp = data["yp"]
    acc = evaluate(data["Xp"], yp, data["Xt"], data["yt"], idx)
    hist = np.bincount(yp[idx], minlength=K).tolist()
    row = {"seed": seed, **acc, "hist": hist}
    if method.startswith("nfpf"):  # NFPF returns its seeds first: floor(0.3 B) of them
        n_seed = int(np.floor(0.3 * budget + 1e-9))
        row["seed_hist"] = np.bincount(yp[idx[:n_seed]], minlength=K).tolist()
        row["progressive_hist"] = np.bincount(yp[idx[n_seed:]], minlength=K).tolist()
    logger.info("%s B=%d s=%d %s hist=%s", method, budget, seed, acc, hist)
    return row


def summarise(rows: list[dict]) -> dict:
    """Mean and std of the accuracies, mean histograms, and the runs themselves."""
    lr = np.array([r["logreg"] for r in rows])
    nn = np.array([r["knn1"] for r in rows])
    extra = {}
    if "seed_hist" in rows[0]:
        extra = {h: np.mean([r[h] for r in rows], 0).round(2).tolist()
                 for h in ("seed_hist", "progressive_hist")}
    return {**extra,
            "logreg": [float(lr.mean()), float(lr.std())],
            "knn1": [float(nn.mean()), float(nn.std())],
            "hist_mean": np.mean([r["hist"] for r in rows], 0).round(2).tolist(),
            "runs": rows}


def rd_views(args: argparse.Namespace, pool, yp: np.ndarray, K: int, cache: Path) -> dict:
    """Reference error (normalised over the pool) per class, and the first round's RD per
    class, when a faithful NFPF run left its reference errors in the cache."""
    ref_file = cache / f"{args.dataset}_ref_errors.npy"
    if not ref_file.exists():
        return {}
    e = np.load(ref_file)
    e = (e - e.min()) / (e.max() - e.min())
    views = {"ref_error_per_class": {
        str(c): [float(np.percentile(e[yp == c], q)) for q in (10, 50, 90)] for c in range(K)}}
    budget = min(args.budgets)
    seed_file = cache / f"{args.dataset}_nfpf_faithful_B{budget}_s0.npy"
    if seed_file.exists():
        views["first_round_rd_per_class"] = first_round_rd(
            pool.pixels(), yp, np.load(ref_file),
            np.load(seed_file)[:int(np.floor(0.3 * budget + 1e-9))], K)
    return views


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import tempfile

    from nfpf.data import load_dataset

    ds = load_dataset(args.dataset)
    pool = ds.pool_view(ds.flat("pool"))
    data = {"Xp": ds.flat("pool") * 2 - 1, "Xt": ds.flat("test") * 2 - 1,
            "yp": ds.pool_labels, "yt": ds.test_labels}
    K = ds.n_classes
    cache = Path(args.cache or Path(tempfile.gettempdir()) / "nfpf_diag")
    cache.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.out) / "figures" / f"diagnose_{args.dataset}.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    results["pool_histogram"] = (np.bincount(data["yp"], minlength=K)
                                 / len(data["yp"])).round(4).tolist()
    for B in args.budgets:
        for m in args.methods:
            # faithful NFPF ignores the run seed (quirk Q3): one selection serves every seed
            seeds = [0] if m == "nfpf_faithful" else args.seeds
            rows = [describe_picks(m, B, s, cached_selection(m, B, s, pool, cache, args.dataset),
                                   data, K) for s in seeds]
            results[f"{m}|B{B}"] = summarise(rows)
    results.update(rd_views(args, pool, data["yp"], K, cache))
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
