"""Training plots: loss curves, ROC on the test split, train/test score distributions per class
(the overtraining check, with Kolmogorov-Smirnov p-values), and permutation feature importance."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from intccms.mva.train import TrainingResult, TrainingSet, weighted_auc

CLASS_STYLE = {1: ("signal", "tab:red"), 0: ("background", "tab:blue")}


def plot_training(result: TrainingResult, data: TrainingSet, out_dir: Path) -> dict[str, Path]:
    """Write every training plot as PNG under ``out_dir``; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "loss": _loss(result, out_dir / "loss.png"),
        "roc": _roc(result, data, out_dir / "roc.png"),
        "scores": _scores(result, data, out_dir / "scores.png"),
        "importance": _importance(result, data, out_dir / "importance.png"),
    }
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _loss(result: TrainingResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(result.history["train_loss"]) + 1)
    ax.plot(epochs, result.history["train_loss"], label="train")
    ax.plot(epochs, result.history["validation_loss"], label="validation")
    ax.set_xlabel("epoch" if result.model.meta.get("kind") == "mlp" else "boosting iteration")
    ax.set_ylabel("weighted log-loss")
    ax.legend()
    return _save(fig, path)


def roc_curve(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background and signal efficiencies for every threshold (weighted)."""
    # scikit-learn: only when plotting a training
    from sklearn.metrics import roc_curve as sk_roc

    fpr, tpr, _ = sk_roc(y, score, sample_weight=w)
    return fpr, tpr


def _roc(result: TrainingResult, data: TrainingSet, path: Path) -> Path:
    test = result.split == 2
    fpr, tpr = roc_curve(data.y[test], result.scores[test], result.train_weight[test])
    fig, ax = plt.subplots(figsize=(5, 5))
    auc = result.model.meta["metrics"]["auc_test"]
    ax.plot(fpr, tpr, label=f"test, AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("background efficiency")
    ax.set_ylabel("signal efficiency")
    ax.legend(loc="lower right")
    return _save(fig, path)


def ks_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (unweighted) of train vs. test scores."""
    # scipy: only when plotting a training
    from scipy.stats import ks_2samp

    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(ks_2samp(a, b).pvalue)


def _scores(result: TrainingResult, data: TrainingSet, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 26)
    for label, (name, colour) in CLASS_STYLE.items():
        tr = (data.y == label) & (result.split == 0)
        te = (data.y == label) & (result.split == 2)
        p = ks_pvalue(result.scores[tr], result.scores[te])
        ax.hist(result.scores[tr], bins=bins,  # type: ignore[arg-type]  # matplotlib's stub: bins may be an array
                weights=result.train_weight[tr], density=True, histtype="stepfilled",
                alpha=0.3, color=colour, label=f"{name} train")
        h, _ = np.histogram(result.scores[te], bins=bins, weights=result.train_weight[te], density=True)
        centres = 0.5 * (bins[1:] + bins[:-1])
        ax.plot(centres, h, "o", color=colour, ms=3, label=f"{name} test (KS p = {p:.2f})")
    ax.set_xlabel("score")
    ax.set_ylabel("normalised")
    ax.legend(fontsize="small")
    return _save(fig, path)


def permutation_importance(result: TrainingResult, data: TrainingSet, seed: int = 0) -> np.ndarray:
    """Drop of the test AUC when one feature is shuffled (same method for both model kinds)."""

    test = result.split == 2
    x, y, w = data.x[test], data.y[test], result.train_weight[test]
    base = weighted_auc(y, result.model.predict(x), w)
    rng = np.random.default_rng(seed)
    drops = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        shuffled = x.copy()
        shuffled[:, j] = shuffled[rng.permutation(len(x)), j]
        drops[j] = base - weighted_auc(y, result.model.predict(shuffled), w)
    return drops


def _importance(result: TrainingResult, data: TrainingSet, path: Path) -> Path:
    drops = permutation_importance(result, data)
    result.model.meta.setdefault("metrics", {})["permutation_importance"] = dict(
        zip(result.model.feature_names, drops.tolist(), strict=True))
    order = np.argsort(drops)
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(drops) + 1.5))
    ax.barh(np.array(result.model.feature_names)[order], drops[order])
    ax.set_xlabel("test AUC decrease when shuffled")
    return _save(fig, path)
