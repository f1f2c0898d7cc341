"""A trained classifier with everything needed to reproduce its inputs; saving and loading.

On storage a model is a folder (local path, ``s3://`` or ``root://`` prefix) of:

* ``model.json``: feature list and order, scaling, class labels, library versions, the training
  configuration and a description of the data it was trained on (readable without unpickling);
* ``estimator.pkl``: the fitted scikit-learn estimator (its SHA-256 is in ``model.json``);
* ``training_data.npz``: the feature matrix, labels, weights and split of the training set.

Pickles are only portable within one scikit-learn version, so loading refuses a model written
by another version instead of risking silently different scores.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from intccms import __version__ as intccms_version
from intccms.mva.features import FeatureSpec, feature_matrix, input_names
from intccms.storage import StorageOptions, join
from intccms.storage.schemes import backend_for

FORMAT_VERSION = 1
META_NAME = "model.json"
ESTIMATOR_NAME = "estimator.pkl"
DATA_NAME = "training_data.npz"
CLASS_LABELS = ("background", "signal")  # index = label; the score is P(signal)


class ModelMismatchError(ValueError):
    """A model file does not match the configuration or the installed libraries."""


def library_versions() -> dict[str, str]:
    """Versions that decide whether a stored estimator gives the same scores."""
    # scikit-learn takes ~1 s to import: only when a model is saved
    import sklearn

    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "intccms": str(intccms_version)}


def _activation(name: str, z: np.ndarray) -> np.ndarray:
    # scipy: only when a network is evaluated
    from scipy.special import expit

    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "logistic":
        return expit(z)
    if name == "identity":
        return z
    msg = f"unknown activation '{name}'"
    raise ValueError(msg)


BLOCK = 256  # events per matrix product in the network's forward pass


def mlp_forward(estimator: Any, x: np.ndarray) -> np.ndarray:
    """P(signal) of a fitted binary ``MLPClassifier``, one event independent of the others.

    A BLAS matrix product may round an event's value differently depending on how many events
    share the batch (edge kernels for leftover rows). Here the events are padded to whole blocks
    of :data:`BLOCK` and every layer is one stacked product of identically shaped blocks, so an
    event gets a bit-identical score in every fill that contains it: a JES variation changes
    exactly the scores of the events whose features changed.
    """
    n = x.shape[0]
    n_blocks = -(-n // BLOCK)
    h = np.zeros((n_blocks * BLOCK, x.shape[1]))
    h[:n] = x
    h = h.reshape(n_blocks, BLOCK, x.shape[1])
    n_layers = len(estimator.coefs_)
    for i, (weights, bias) in enumerate(zip(estimator.coefs_, estimator.intercepts_, strict=True)):
        z = np.matmul(h, weights)
        z += bias
        h = _activation(estimator.activation if i < n_layers - 1 else estimator.out_activation_, z)
    return np.ascontiguousarray(h.reshape(-1, h.shape[-1])[:n, 0], dtype=np.float64)


@dataclass
class Scaler:
    """``(x - offset) / scale`` per feature, fitted on the training split."""

    kind: str
    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, kind: str, x: np.ndarray, weights: np.ndarray) -> Scaler:
        n = x.shape[1]
        if kind == "standard":
            w = weights / weights.sum()
            mean = w @ x
            std = np.sqrt(w @ (x - mean) ** 2)
            return cls(kind, mean, np.where(std > 0, std, 1.0))
        if kind == "minmax":
            lo, hi = x.min(axis=0), x.max(axis=0)
            return cls(kind, lo, np.where(hi > lo, hi - lo, 1.0))
        return cls("none", np.zeros(n), np.ones(n))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.offset) / self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Scaler:
        return cls(str(doc["kind"]), np.asarray(doc["offset"], dtype=np.float64),
                   np.asarray(doc["scale"], dtype=np.float64))


@dataclass
class TrainedModel:
    """A fitted estimator, its feature specs and scaling, and its provenance (``meta``)."""

    estimator: Any
    features: tuple[FeatureSpec, ...]
    scaler: Scaler
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names the features read, in the order the score observable takes them."""
        return input_names(self.features)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(signal) for a raw (unscaled) feature matrix; empty input gives an empty array."""
        if x.shape[0] == 0:
            return np.empty(0)
        scaled = self.scaler.transform(x)
        if hasattr(self.estimator, "coefs_"):
            return mlp_forward(self.estimator, scaled)
        # One thread: a Dask worker owns one core; OpenMP over all cores would oversubscribe.
        with threadpool_limits(limits=1):
            return np.asarray(self.estimator.predict_proba(scaled)[:, 1], dtype=np.float64)

    def score_events(self, namespace: Mapping[str, Any], n: int) -> np.ndarray:
        """Compute the features from events and objects, then the score, for ``n`` events."""
        return self.predict(feature_matrix(self.features, namespace, n))

    # -- storage --------------------------------------------------------------------------
    def save(self, url: str, options: StorageOptions | None = None,
             training_data: Mapping[str, np.ndarray] | None = None) -> str:
        """Write the model folder at ``url`` (each file committed atomically); returns ``url``."""
        backend = backend_for(url, options)
        blob = pickle.dumps(self.estimator, protocol=pickle.HIGHEST_PROTOCOL)
        meta = dict(self.meta)
        meta.update({
            "format": FORMAT_VERSION,
            "features": [f.to_dict() for f in self.features],
            "inputs": list(self.inputs),
            "scaling": self.scaler.to_dict(),
            "class_labels": list(CLASS_LABELS),
            "versions": meta.get("versions") or library_versions(),
            "estimator_sha256": hashlib.sha256(blob).hexdigest(),
        })
        if training_data is not None:
            buffer = io.BytesIO()
            # numpy's stub also matches **arrays against its allow_pickle: bool keyword
            np.savez_compressed(buffer, **training_data)  # type: ignore[arg-type]
            data = buffer.getvalue()
            meta.setdefault("data", {})["sha256"] = hashlib.sha256(data).hexdigest()
            _write(backend, join(url, DATA_NAME), data)
        self.meta = meta
        _write(backend, join(url, ESTIMATOR_NAME), blob)
        _write(backend, join(url, META_NAME), json.dumps(meta, indent=1, sort_keys=True).encode())
        return url


def _write(backend: Any, url: str, payload: bytes) -> None:
    with backend.staging(url) as local, open(local, "wb") as handle:
        handle.write(payload)


def read_meta(url: str, options: StorageOptions | None = None) -> dict[str, Any]:
    """The ``model.json`` of the model at ``url``.

    Raises:
        FileNotFoundError: no model there (the message says how to train one).
    """
    backend = backend_for(url, options)
    meta_url = join(url, META_NAME)
    if not backend.exists(meta_url):
        msg = (f"no trained model at {url} ({META_NAME} is missing); train one with "
               "workflow.run_mva_training=true or point the score observable's params.model at it")
        raise FileNotFoundError(msg)
    try:
        meta = json.loads(backend.read_bytes(meta_url))
    except json.JSONDecodeError as err:
        msg = f"{meta_url} is not valid JSON ({err}); retrain the model"
        raise ModelMismatchError(msg) from None
    if meta.get("format") != FORMAT_VERSION:
        msg = f"{meta_url}: model format {meta.get('format')} is not {FORMAT_VERSION}; retrain the model"
        raise ModelMismatchError(msg)
    return meta


def check_versions(meta: Mapping[str, Any], url: str) -> None:
    """Refuse a model pickled by another scikit-learn version."""
    stored = dict(meta.get("versions", {})).get("scikit-learn")
    installed = library_versions()["scikit-learn"]
    if stored != installed:
        msg = (f"model {url} was written with scikit-learn {stored}, but {installed} is installed; "
               f"retrain the model or install scikit-learn=={stored}")
        raise ModelMismatchError(msg)


def check_features(meta: Mapping[str, Any], expected: Sequence[FeatureSpec], url: str) -> None:
    """Refuse a model whose features (names, order, functions, inputs, params) differ."""
    compare_features([FeatureSpec.from_dict(d) for d in meta.get("features", [])], expected, url)


def compare_features(stored: Sequence[FeatureSpec], expected: Sequence[FeatureSpec], url: str) -> None:
    """Refuse features ``stored`` with a model that differ from ``expected`` in any way.

    Raises:
        ModelMismatchError: the message names each feature that differs and how.
    """
    stored, expected = list(stored), list(expected)
    if stored == expected:
        return
    names_stored = [f.name for f in stored]
    names_expected = [f.name for f in expected]
    if names_stored != names_expected:
        detail = f"the model has features {names_stored}, the configuration {names_expected}"
    else:
        diff = [f"'{e.name}' ({_difference(s, e)})" for s, e in zip(stored, expected, strict=True) if s != e]
        detail = f"features defined differently (function, inputs or params): {', '.join(diff)}"
    msg = f"model {url} was trained on other features: {detail}; retrain it (workflow.run_mva_training=true)"
    raise ModelMismatchError(msg)


def _difference(stored: FeatureSpec, expected: FeatureSpec) -> str:
    parts = [f"{key}: model {getattr(stored, key)!r}, configuration {getattr(expected, key)!r}"
             for key in ("function", "inputs") if getattr(stored, key) != getattr(expected, key)]
    if dict(stored.params) != dict(expected.params):
        parts.append(f"params: model {dict(stored.params)}, configuration {dict(expected.params)}")
    return "; ".join(parts)


def load_model(url: str, options: StorageOptions | None = None,
               expected_features: Sequence[FeatureSpec] | None = None) -> TrainedModel:
    """Load and check a model folder.

    Args:
        url: the folder the training stage wrote (``mva.output``).
        options: storage options (endpoint, timeouts, credentials).
        expected_features: when given, the model must have exactly these features.

    Raises:
        FileNotFoundError: no model at ``url``.
        ModelMismatchError: other features, other scikit-learn version, or a corrupt file.
    """
    meta = read_meta(url, options)
    check_versions(meta, url)
    if expected_features is not None:
        check_features(meta, expected_features, url)
    backend = backend_for(url, options)
    blob = backend.read_bytes(join(url, ESTIMATOR_NAME))
    if hashlib.sha256(blob).hexdigest() != meta.get("estimator_sha256"):
        msg = f"{join(url, ESTIMATOR_NAME)} does not match the checksum in {META_NAME}; retrain the model"
        raise ModelMismatchError(msg)
    estimator = pickle.loads(blob)  # noqa: S301 - our own file, checksum verified above
    features = tuple(FeatureSpec.from_dict(d) for d in meta["features"])
    return TrainedModel(estimator=estimator, features=features,
                        scaler=Scaler.from_dict(meta["scaling"]), meta=meta)
