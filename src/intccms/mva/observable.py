"""The classifier score as an observable: ``function: intccms.mva.observable.score``.

The observable's ``inputs`` are the names the model's features read, in the order the model
stores them (``model.json`` ``inputs``; for the reference features
``[muons, fatjets, jets, PuppiMET]``), and its ``params`` name the model folder::

    mva_score:
      function: intccms.mva.observable.score
      inputs: [muons, fatjets, jets, PuppiMET]
      params: {model: s3://bucket/models/zprime, features: ${mva.features}}

``features`` is either the full feature definitions (``${mva.features}``: each feature's function,
inputs and params are compared with those the model was trained on) or only their names.

Like any observable it is recomputed in object-variation (JES) fills from the varied jets and
reused in weight-only variations. Each worker process loads a model once (first use, from the
configured storage, never through the scheduler) and scores whole chunks at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from intccms.mva.features import specs_from_config
from intccms.mva.model import ModelMismatchError, TrainedModel, compare_features, load_model
from intccms.storage import StorageOptions

_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], TrainedModel] = {}
_LOCK = threading.Lock()
_LOADS = [0]  # models read from storage by this process (diagnostics, tests)


def _options(storage: Mapping[str, Any] | None) -> StorageOptions | None:
    if not storage:
        return None
    return StorageOptions(s3_endpoint=storage.get("s3_endpoint"),
                          timeout_s=float(storage.get("timeout_s", 30.0)),
                          retries=int(storage.get("retries", 2)))


def get_model(url: str, storage: Mapping[str, Any] | None = None) -> TrainedModel:
    """The model at ``url``, loaded at most once per process (thread-safe)."""
    key = (str(url), tuple(sorted((storage or {}).items())))
    model = _CACHE.get(key)
    if model is None:
        with _LOCK:
            model = _CACHE.get(key)
            if model is None:
                model = load_model(str(url), _options(storage))
                _CACHE[key] = model
                _LOADS[0] += 1
    return model


def clear_cache() -> int:
    """Forget loaded models (after retraining to the same folder); returns how many."""
    with _LOCK:
        n = len(_CACHE)
        _CACHE.clear()
    return n


def cached_models() -> list[str]:
    """URLs of the models this process holds (for tests and diagnostics)."""
    return sorted({url for url, _ in _CACHE})


def loads() -> int:
    """How many times this process has read a model from storage."""
    return _LOADS[0]


def score(*values: Any, model: str, features: Sequence[str] | Mapping[str, Any] | None = None,
          storage: Mapping[str, Any] | None = None) -> np.ndarray:
    """P(signal) of every event, from the observable's inputs.

    Args:
        *values: the observable's inputs, in the order of the model's ``inputs``.
        model: the model folder (local path, ``s3://`` or ``root://`` URL).
        features: the features the configuration expects: their definitions
            (``name -> {function, inputs, params}``, as ``mva.features``) or only their names;
            a model trained on other features is refused.
        storage: optional ``s3_endpoint``, ``timeout_s``, ``retries`` for reading the model.

    Returns:
        One score in [0, 1] per event.

    Raises:
        ModelMismatchError: the model's features differ (the message names them).
    """
    trained = get_model(model, storage)
    if features is not None and list(features) != trained.feature_names:
        msg = (f"model {model} was trained on features {trained.feature_names}, but the score "
               f"observable expects {list(features)}; retrain it (workflow.run_mva_training=true)")
        raise ModelMismatchError(msg)
    if isinstance(features, Mapping):
        compare_features(trained.features, specs_from_config(features), model)
    names = trained.inputs
    if len(values) != len(names):
        msg = (f"score observable got {len(values)} inputs, but model {model} needs {list(names)} "
               "(set the observable's inputs to exactly these, in this order)")
        raise ValueError(msg)
    n = next((len(v) for v in values if hasattr(v, "__len__") and not isinstance(v, str)), 0)
    return trained.score_events(dict(zip(names, values, strict=True)), n)
