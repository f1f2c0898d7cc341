"""A trained classifier as an observable.

Contract: the ``mva`` configuration group names features (functions of named inputs, like
observables), two classes of simulated samples, a model (a fully connected network or
gradient-boosted trees, both scikit-learn) and how to train it. The training stage
(:func:`intccms.mva.stage.run_training`) selects the events of one channel on the cluster, fits
deterministically for a seed, and writes a model folder that records everything needed to
reproduce its inputs (:mod:`intccms.mva.model`). :func:`intccms.mva.observable.score` then makes
the model's score an observable usable in any channel and every variation.
"""

from intccms.config.mva import MvaConfig, MvaConfigError, load_mva_config
from intccms.mva.features import FeatureError, FeatureSpec, feature_matrix
from intccms.mva.model import ModelMismatchError, TrainedModel, load_model, read_meta
from intccms.mva.train import EmptyClassError, TrainingSet, train

__all__ = [
    "EmptyClassError",
    "FeatureError",
    "FeatureSpec",
    "ModelMismatchError",
    "MvaConfig",
    "MvaConfigError",
    "TrainedModel",
    "TrainingSet",
    "feature_matrix",
    "load_model",
    "load_mva_config",
    "read_meta",
    "train",
]
