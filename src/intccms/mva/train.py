"""Fit a classifier deterministically: split, weights, scaling, training loop, test metrics.

Both model kinds train epoch by epoch with the weighted log-loss measured on the training and
validation splits after every epoch (the loss curves), and early stopping keeps the model of
the best validation epoch. The network is ``MLPClassifier.partial_fit`` (one pass of Adam
over shuffled mini-batches per epoch); the trees are ``HistGradientBoostingClassifier`` with
one boosting iteration per epoch, scored with ``staged_predict_proba``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intccms.config.mva import ModelKind, MvaConfig, NegativeWeights, Scaling
from intccms.mva.features import FeatureSpec
from intccms.mva.model import Scaler, TrainedModel, library_versions


class EmptyClassError(ValueError):
    """A class has no training events; the message names the class and its samples."""


@dataclass
class TrainingSet:
    """Features, labels (1 = signal) and physics weights of the selected events."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    dataset: np.ndarray | None = None  # dataset name of each event
    origin: dict[str, Any] = field(default_factory=dict)  # JSON-able description, kept with the model


@dataclass
class TrainingResult:
    """The model and what the plots and checks need."""

    model: TrainedModel
    split: np.ndarray  # 0 train, 1 validation, 2 test, per event of the training set
    train_weight: np.ndarray  # the weights the fit used (after sign treatment and balancing)
    history: dict[str, list[float]]
    scores: np.ndarray  # P(signal) of every event of the training set


def weighted_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Binary cross-entropy averaged with weights ``w``."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def weighted_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> float:
    """Area under the ROC curve with event weights (ties counted half)."""
    # scikit-learn takes ~1 s to import: only the training stage loads it
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score, sample_weight=w))


def assign_split(y: np.ndarray, cfg: MvaConfig) -> np.ndarray:
    """Seeded per-class shuffle into train (0), validation (1) and test (2)."""
    split = cfg.training.split
    rng = np.random.default_rng(cfg.training.seed)
    out = np.empty(len(y), dtype=np.int8)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        idx = idx[rng.permutation(len(idx))]
        n_train = round(split.train * len(idx))
        n_val = round(split.validation * len(idx))
        out[idx[:n_train]] = 0
        out[idx[n_train:n_train + n_val]] = 1
        out[idx[n_train + n_val:]] = 2
    return out


def usable_weights(weight: np.ndarray, cfg: MvaConfig) -> np.ndarray:
    """Physics weights after the sign treatment: |w| (``abs``) or 0 for w <= 0 (``drop``)."""
    if cfg.training.negative_weights == NegativeWeights.abs:
        return np.abs(weight)
    return np.where(weight > 0, weight, 0.0)


def training_weights(y: np.ndarray, weight: np.ndarray, cfg: MvaConfig) -> np.ndarray:
    """Physics weights made usable for a fit: sign treatment, then class balance.

    ``negative_weights: abs`` trains with |w| (NLO samples keep all their events; the
    kinematics are the same, only the yield cancels); ``drop`` gives such events weight 0.
    With ``balance_classes`` each class is scaled to the same total, half the event count.
    """
    w = usable_weights(weight, cfg)
    if cfg.training.balance_classes:
        w = w.copy()
        for label in (0, 1):
            sel = y == label
            total = w[sel].sum()
            if total > 0:
                w[sel] *= 0.5 * len(y) / total
    else:
        w = w * (len(y) / w.sum())
    return w


def _estimator(cfg: MvaConfig) -> Any:
    m, t = cfg.model, cfg.training
    if m.kind == ModelKind.mlp:
        # scikit-learn: only the training stage loads it
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=tuple(layer.size for layer in m.layers),
            activation=m.layers[0].activation, solver="adam", alpha=m.l2,
            batch_size=t.batch_size, learning_rate_init=t.learning_rate, shuffle=True,
            random_state=t.seed,
        )
    # scikit-learn: only the training stage loads it
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=t.learning_rate, max_iter=t.epochs, max_depth=m.max_depth,
        max_leaf_nodes=m.max_leaf_nodes, min_samples_leaf=m.min_samples_leaf,
        l2_regularization=m.l2, early_stopping=False, random_state=t.seed,
    )


def _fit_mlp(est: Any, cfg: MvaConfig, xs: dict[int, np.ndarray], ys: dict[int, np.ndarray],
             ws: dict[int, np.ndarray]) -> tuple[Any, dict[str, list[float]]]:
    """Epoch loop with early stopping on the validation loss; returns the best epoch's model."""
    es = cfg.training.early_stopping
    history: dict[str, list[float]] = {"train_loss": [], "validation_loss": []}
    best, best_loss, stale = None, np.inf, 0
    for _ in range(cfg.training.epochs):
        est.partial_fit(xs[0], ys[0], sample_weight=ws[0], classes=np.array([0, 1]))
        history["train_loss"].append(weighted_log_loss(ys[0], est.predict_proba(xs[0])[:, 1], ws[0]))
        val = weighted_log_loss(ys[1], est.predict_proba(xs[1])[:, 1], ws[1])
        history["validation_loss"].append(val)
        if val < best_loss - es.min_delta:
            best, best_loss, stale = copy.deepcopy(est), val, 0
        else:
            stale += 1
            if es.enabled and stale >= es.patience:
                break
    history["best_epoch"] = [float(int(np.argmin(history["validation_loss"])) + 1)]
    return (best if es.enabled and best is not None else est), history


def _fit_bdt(est: Any, cfg: MvaConfig, xs: dict[int, np.ndarray], ys: dict[int, np.ndarray],
             ws: dict[int, np.ndarray]) -> tuple[Any, dict[str, list[float]]]:
    """Fit all iterations, read the curves from the staged predictions, keep the best prefix."""
    est.fit(xs[0], ys[0], sample_weight=ws[0])
    history: dict[str, list[float]] = {"train_loss": [], "validation_loss": []}
    for p_train, p_val in zip(est.staged_predict_proba(xs[0]), est.staged_predict_proba(xs[1]), strict=True):
        history["train_loss"].append(weighted_log_loss(ys[0], p_train[:, 1], ws[0]))
        history["validation_loss"].append(weighted_log_loss(ys[1], p_val[:, 1], ws[1]))
    es = cfg.training.early_stopping
    n_best = _best_prefix(history["validation_loss"], es.patience, es.min_delta) if es.enabled else est.n_iter_
    if n_best < est.n_iter_:
        est.set_params(max_iter=n_best)
        est.fit(xs[0], ys[0], sample_weight=ws[0])
        for key in history:
            history[key] = history[key][:n_best]
    history["best_epoch"] = [float(n_best)]
    return est, history


def _best_prefix(losses: list[float], patience: int, min_delta: float) -> int:
    """Number of epochs early stopping would keep: the best epoch before ``patience`` stale ones."""
    best, best_i, stale = np.inf, 0, 0
    for i, loss in enumerate(losses):
        if loss < best - min_delta:
            best, best_i, stale = loss, i, 0
        else:
            stale += 1
            if stale >= patience:
                break
    return best_i + 1


def train(data: TrainingSet, features: tuple[FeatureSpec, ...], cfg: MvaConfig,
          config_doc: dict[str, Any] | None = None) -> TrainingResult:
    """Train the configured model on ``data``; same data and seed give the same model.

    Raises:
        EmptyClassError: a class has fewer than 3 events, or no usable (positive) weight after
            the sign treatment of ``negative_weights``.
    """
    y = data.y.astype(np.int64)
    for label, name in ((1, "signal"), (0, "background")):
        n = int(np.count_nonzero(y == label))
        if n < 3:
            patterns = getattr(cfg.classes, name)
            msg = (f"mva class '{name}' (mva.classes.{name}: {patterns}) has {n} selected events in "
                   f"channel {cfg.channel}; it needs at least 3 (check the patterns, the datasets "
                   "selected for this run and the channel's cuts)")
            raise EmptyClassError(msg)
    split = assign_split(y, cfg)
    _check_usable_weight(y, split, usable_weights(data.weight, cfg), cfg)
    w = training_weights(y, data.weight, cfg)
    scaler = Scaler.fit(Scaling(cfg.scaling).value, data.x[split == 0], np.maximum(w[split == 0], 1e-300))
    xt = scaler.transform(data.x)
    xs = {k: xt[split == k] for k in (0, 1, 2)}
    ys = {k: y[split == k] for k in (0, 1, 2)}
    ws = {k: w[split == k] for k in (0, 1, 2)}
    est = _estimator(cfg)
    fit = _fit_mlp if cfg.model.kind == ModelKind.mlp else _fit_bdt
    est, history = fit(est, cfg, xs, ys, ws)
    model = TrainedModel(estimator=est, features=features, scaler=scaler)
    scores = model.predict(data.x)  # exactly what inference gives
    test = split == 2
    meta = {
        "kind": ModelKind(cfg.model.kind).value,
        "channel": cfg.channel,
        "classes": {"signal": list(cfg.classes.signal), "background": list(cfg.classes.background)},
        "training": config_doc or {},
        "versions": library_versions(),
        "data": dict(data.origin, events={"signal": int((y == 1).sum()), "background": int((y == 0).sum())},
                     split={"train": int((split == 0).sum()), "validation": int((split == 1).sum()),
                            "test": int(test.sum())}),
        "metrics": {
            "auc_test": weighted_auc(y[test], scores[test], w[test]),
            "auc_train": weighted_auc(y[split == 0], scores[split == 0], w[split == 0]),
            "epochs_run": len(history["train_loss"]),
        },
    }
    model.meta = meta
    return TrainingResult(model=model, split=split, train_weight=w, history=history, scores=scores)


def _check_usable_weight(y: np.ndarray, split: np.ndarray, usable: np.ndarray, cfg: MvaConfig) -> None:
    """A class whose events all weigh nothing would be silently left out of balancing and of
    the loss (e.g. only negative weights with ``negative_weights: drop``)."""
    treatment = NegativeWeights(cfg.training.negative_weights).value
    for label, name in ((1, "signal"), (0, "background")):
        sel = y == label
        for where, mask in (("", sel), (" in the training split", sel & (split == 0))):
            total = float(usable[mask].sum())
            if total > 0:
                continue
            patterns = getattr(cfg.classes, name)
            msg = (f"mva class '{name}' (mva.classes.{name}: {patterns}) has {int(sel.sum())} selected "
                   f"events in channel {cfg.channel} but no usable weight{where} (sum {total:g} after "
                   f"mva.training.negative_weights: {treatment}); check the samples' genWeight, or "
                   "train with negative_weights: abs")
            raise EmptyClassError(msg)


def limit_per_class(data: TrainingSet, n_max: int | None, seed: int) -> TrainingSet:
    """Keep at most ``n_max`` events of each class: a seeded random subset in original order."""
    if n_max is None:
        return data
    rng = np.random.default_rng(seed + 1)
    keep = np.zeros(len(data.y), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(data.y == label)
        if len(idx) > n_max:
            idx = np.sort(rng.choice(idx, size=n_max, replace=False))
        keep[idx] = True
    return TrainingSet(x=data.x[keep], y=data.y[keep], weight=data.weight[keep],
                       dataset=None if data.dataset is None else data.dataset[keep],
                       origin=dict(data.origin, max_events_per_class=n_max))
