"""Structured configuration of the ``mva`` group: features, classes, model, training, scaling.

Plain dataclasses (OmegaConf-compatible field types) merged over the YAML of ``conf/mva/``, so a
misspelt key or a wrong type fails at start-up naming ``mva.<key>``. Checks that types alone
cannot express (mixed activations, split fractions, empty classes) live in
:func:`load_mva_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intccms.config.keys import schema_error
from intccms.physics.functors import FunctorError, import_function


class MvaConfigError(ValueError):
    """The ``mva`` configuration is invalid; the message names the key."""


class ModelKind(str, Enum):
    """The two model families behind :class:`intccms.mva.model.TrainedModel`."""

    mlp = "mlp"  # fully connected network (scikit-learn MLPClassifier)
    bdt = "bdt"  # gradient-boosted trees (scikit-learn HistGradientBoostingClassifier)


class Scaling(str, Enum):
    """Per-feature transformation applied before the model (stored with the model)."""

    standard = "standard"  # (x - mean) / std, weighted, on the training split
    minmax = "minmax"  # (x - min) / (max - min) on the training split
    none = "none"


class NegativeWeights(str, Enum):
    """What training does with events of negative physics weight (NLO generators)."""

    abs = "abs"  # train with |w|: keeps the events, the sign only matters for yields
    drop = "drop"  # leave the events out of training


@dataclass
class FeatureConfig:
    """A model input: a function of named inputs returning one number per event."""

    function: str = MISSING
    inputs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerConfig:
    """One hidden layer of the network."""

    size: int = MISSING
    activation: str = "relu"


@dataclass
class ModelConfig:
    """The model: ``kind`` picks which of the settings below apply."""

    kind: ModelKind = ModelKind.mlp
    # mlp: hidden layers in order (the output layer is a logistic unit).
    layers: list[LayerConfig] = field(default_factory=lambda: [LayerConfig(32), LayerConfig(32)])
    l2: float = 1.0e-4
    # bdt: tree shape and regularisation.
    max_depth: int | None = 4
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20


@dataclass
class EarlyStoppingConfig:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs;
    the model of the best epoch is kept."""

    enabled: bool = True
    patience: int = 10
    min_delta: float = 1.0e-4


@dataclass
class SplitConfig:
    """Fractions of the events (per class, shuffled with the seed) for each purpose."""

    train: float = 0.6
    validation: float = 0.2
    test: float = 0.2


@dataclass
class TrainingConfig:
    """How the model is fitted. ``epochs`` is the number of boosting iterations for ``bdt``;
    ``batch_size`` applies to ``mlp`` only."""

    seed: int = 12345
    split: SplitConfig = field(default_factory=SplitConfig)
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1.0e-3
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    negative_weights: NegativeWeights = NegativeWeights.abs
    # Scale each class to the same total weight, so the rare signal counts as much as tt.
    balance_classes: bool = True
    # Keep at most this many events per class (a random, seeded subset); None keeps all.
    max_events_per_class: int | None = None


@dataclass
class ClassesConfig:
    """Process-name patterns (fnmatch) of the simulated samples of each class."""

    signal: list[str] = field(default_factory=list)
    background: list[str] = field(default_factory=list)


@dataclass
class MvaConfig:
    """Everything the training stage needs; the trained model records all of it."""

    # Training events: those selected in this channel (nominal, simulation only).
    channel: str = MISSING
    features: dict[str, FeatureConfig] = field(default_factory=dict)
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    scaling: Scaling = Scaling.standard
    # Where the model is written and read: local path, s3://bucket/prefix or root://host//path.
    output: str = MISSING
    plots: bool = True


def load_mva_config(node: Any) -> MvaConfig:
    """Merge the ``mva`` node over the schema and check it.

    Args:
        node: the ``mva`` node of the job configuration (a DictConfig or a plain mapping).

    Returns:
        The typed configuration.

    Raises:
        MvaConfigError: unknown key, wrong type, missing value or inconsistent setting; the
            message names the key under ``mva.``.
    """
    if node is None:
        msg = "mva: no configuration; add 'mva: <name>' (a file in conf/mva/) to the defaults"
        raise MvaConfigError(msg)
    if isinstance(node, MvaConfig):
        cfg = node
    else:
        try:
            merged = OmegaConf.merge(OmegaConf.structured(MvaConfig), node)
            cfg = cast(MvaConfig, OmegaConf.to_object(merged))
        except OmegaConfBaseException as err:
            raise MvaConfigError(schema_error("mva.", MvaConfig, err)) from None
    assert isinstance(cfg, MvaConfig)
    _check(cfg)
    return cfg


def _check(cfg: MvaConfig) -> None:

    if not cfg.features:
        raise MvaConfigError("mva.features: at least one feature is needed")
    for name, feat in cfg.features.items():
        try:
            import_function(feat.function)
        except FunctorError as err:
            msg = f"mva.features.{name}.function: {err}"
            raise MvaConfigError(msg) from None
    for cls in ("signal", "background"):
        if not getattr(cfg.classes, cls):
            msg = f"mva.classes.{cls}: list at least one process-name pattern"
            raise MvaConfigError(msg)
    split = cfg.training.split
    fractions = {"train": split.train, "validation": split.validation, "test": split.test}
    for key, value in fractions.items():
        if not 0.0 < value < 1.0:
            msg = f"mva.training.split.{key}: {value} must lie strictly between 0 and 1"
            raise MvaConfigError(msg)
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        msg = f"mva.training.split: fractions {fractions} must add up to 1"
        raise MvaConfigError(msg)
    for key in ("epochs", "batch_size"):
        if int(getattr(cfg.training, key)) <= 0:
            msg = f"mva.training.{key}: must be positive, got {getattr(cfg.training, key)}"
            raise MvaConfigError(msg)
    if not cfg.training.learning_rate > 0:
        msg = f"mva.training.learning_rate: must be positive, got {cfg.training.learning_rate}"
        raise MvaConfigError(msg)
    if cfg.model.kind == ModelKind.mlp:
        _check_layers(cfg.model.layers)


# Hidden-layer activations scikit-learn's MLPClassifier offers (one for all hidden layers).
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")


def _check_layers(layers: list[LayerConfig]) -> None:
    if not layers:
        raise MvaConfigError("mva.model.layers: an mlp needs at least one hidden layer")
    for i, layer in enumerate(layers):
        if layer.size <= 0:
            msg = f"mva.model.layers[{i}].size: must be positive, got {layer.size}"
            raise MvaConfigError(msg)
        if layer.activation not in ACTIVATIONS:
            msg = f"mva.model.layers[{i}].activation: '{layer.activation}' is not one of {ACTIVATIONS}"
            raise MvaConfigError(msg)
    kinds = sorted({layer.activation for layer in layers})
    if len(kinds) > 1:
        msg = (f"mva.model.layers: mixed activations {kinds}; the network (scikit-learn "
               "MLPClassifier) uses one activation for every hidden layer, so give all layers "
               "the same activation")
        raise MvaConfigError(msg)


def to_plain(cfg: MvaConfig) -> dict[str, Any]:
    """The configuration as plain JSON-able data (enums as strings), stored with the model."""
    node = OmegaConf.structured(cfg)
    out = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return cast("dict[str, Any]", out)

