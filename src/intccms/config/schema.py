"""Structured-config schemas: the single home of every option.

YAML groups in ``conf/`` fill these dataclasses; OmegaConf enforces the types and rejects keys
that are not declared here. Only OmegaConf-compatible types are used (str, int, float, bool,
Enum, Optional, lists and dicts of those, nested dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from intccms.config.inspect import InspectConfig
from intccms.config.kubernetes import KubernetesClusterConfig
from intccms.config.mva import MvaConfig
from intccms.config.statistics import StatisticsConfig


class ClusterKind(str, Enum):
    """Where the Dask cluster comes from."""

    local = "local"
    kubernetes = "kubernetes"
    address = "address"


class LogLevel(str, Enum):
    """Python logging levels: a typo fails at composition with the allowed names listed."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class SkimFormat(str, Enum):
    """On-disk format of skimmed events."""

    parquet = "parquet"
    ttree = "ttree"
    rntuple = "rntuple"


class GridAuth(str, Enum):
    """Which grid credential a job that reads or writes ``root://`` URLs must hold."""

    none = "none"  # anonymous servers work; credentials found are still checked and used
    x509 = "x509"
    token = "token"
    any = "any"  # a valid X509 proxy or a valid bearer token


@dataclass
class ClusterConfig:
    """Dask cluster backend (``cluster`` group)."""

    kind: ClusterKind = ClusterKind.local
    n_workers: int = 2
    threads_per_worker: int = 1
    # Per worker: a size ("4GiB", "3.5GB"), a fraction of the machine's memory ("0.5"), "auto"
    # (the machine's memory shared by the workers) or "0" (no limit).
    memory_limit: str = "4GiB"
    processes: bool = True
    # Workers serve Prometheus /metrics on their dashboard port; 0 picks a free port.
    dashboard_address: str = "127.0.0.1:0"
    address: str | None = None
    connect_timeout_s: float = 30.0
    # Bound of the wait for workers at start (local: all n_workers; address: at least one), so a
    # cluster without workers fails with a message instead of leaving the job waiting forever.
    workers_timeout_s: float = 120.0
    # A stage whose chunks wait this long with no worker connected (all lost, none back: evicted
    # pods, a crash loop, an image that cannot be pulled) fails instead of waiting forever.
    no_workers_timeout_s: float = 600.0
    # Dask's statistical profiler samples every task's stack from a thread that takes the GIL;
    # it slows Python-heavy tasks severalfold, so it is off unless asked for (dashboard "Profile").
    worker_profile: bool = False
    # The ``kubernetes`` backend's cluster (conf/cluster/kubernetes.yaml); None for the others.
    kubernetes: KubernetesClusterConfig | None = None


@dataclass
class StorageConfig:
    """Where skims go and how stores are reached (``storage`` group)."""

    s3_endpoint: str | None = None
    timeout_s: float = 30.0
    retries: int = 2
    writer_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reader_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CredentialsConfig:
    """Where the grid credentials are (``credentials`` group): paths only, never contents.

    ``None`` discovers each the way the XRootD client does (:mod:`intccms.storage.grid`).
    """

    require: GridAuth = GridAuth.none
    # None: $X509_USER_PROXY, else /tmp/x509up_u<uid>.
    x509_proxy: str | None = None
    # None: $X509_CERT_DIR, else /etc/grid-security/certificates.
    x509_cert_dir: str | None = None
    # None: INTCCMS_XROOTD_TOKEN, then WLCG discovery (BEARER_TOKEN, BEARER_TOKEN_FILE,
    # $XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>).
    bearer_token_file: str | None = None
    # A proxy that expires sooner than this (hours) stops the job at start-up.
    min_lifetime_h: float = 2.0
    # Likewise for a bearer token: WLCG access tokens live minutes to hours and are renewed
    # continuously (a refreshed file or Secret), so their margin is shorter.
    token_min_lifetime_h: float = 0.25


@dataclass
class GeneratorSpec:
    """How the project generates a dataset's files when they are missing (demo data)."""

    kind: str = MISSING
    n_files: int = 1
    # For ``kind: data``, 0 means as many events as the simulated processes (``params.processes``)
    # predict at the era's luminosity, so data and simulation agree.
    events_per_file: int = 10000
    seed: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    compression: str = "lzma"
    # LZMA level 1, not UL NanoAOD's 9: reading (what the analysis pays) costs the same, the
    # files are ~1% larger, and writing them is ~4x faster, which is most of a first `make run`.
    # None: the algorithm's production default (LZMA 9, ZSTD 5); benchmarks generate with it.
    compression_level: int | None = 1


@dataclass
class DatasetConfig:
    """One dataset: a sample of one era, its files and its normalisation inputs."""

    era: str = MISSING
    process: str | None = None
    is_data: bool = False
    xsec: float | None = None
    das_name: str | None = None
    files: list[str] = field(default_factory=list)
    listings: list[str] = field(default_factory=list)
    redirector: str | None = None
    max_files: int | None = None
    generate: GeneratorSpec | None = None


@dataclass
class EraConfig:
    """Era-dependent constants (``eras`` block, keyed by era name)."""

    year: str = MISSING
    luminosity: float = MISSING
    golden_json: str | None = None
    correction_folder: str = MISSING
    jec_campaign: str = MISSING
    pileup_key: str = MISSING
    trigger_sf_key: str = MISSING
    triggers: list[str] = field(default_factory=lambda: ["Mu50"])


@dataclass
class FunctorConfig:
    """A physics function referenced by import path, with named inputs and fixed parameters."""

    function: str = MISSING
    inputs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    # coffea's behaviours on the collection and object inputs: vector, candidate or nanoevents.
    behaviour: str | None = None


@dataclass
class BinningConfig:
    """Uniform binning of an observable; values outside go to the flow bins."""

    bins: int = MISSING
    start: float = MISSING
    stop: float = MISSING


@dataclass
class ObservableConfig:
    """An observable: a functor evaluated on the events of a channel, and its binning."""

    function: str = MISSING
    inputs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    # coffea's behaviours on the collection and object inputs: vector, candidate or nanoevents.
    behaviour: str | None = None
    binning: BinningConfig = field(default_factory=BinningConfig)
    label: str = ""


@dataclass
class ChannelConfig:
    """A channel: the baseline plus its own named cuts, and the observables it fills."""

    use_baseline: bool = True
    cuts: dict[str, FunctorConfig] = field(default_factory=dict)
    observables: list[str] = field(default_factory=list)


@dataclass
class PlotConfig:
    """How processes are shown in the stacked plots."""

    # Legend entry -> fnmatch patterns of process names stacked together (in this order).
    groups: dict[str, list[str]] = field(default_factory=dict)
    # Processes drawn as lines on top of the stack instead of stacked.
    signals: list[str] = field(default_factory=lambda: ["ZPrime*"])
    log_y: bool = True


@dataclass
class AnalysisConfig:
    """Objects, selections, channels and observables (``analysis`` group)."""

    # NanoAOD collections and the fields read from each (branch ``{collection}_{field}``).
    collections: dict[str, list[str]] = field(default_factory=dict)
    # Per-event branches read as they are (run, luminosityBlock, genWeight, ...).
    event_columns: list[str] = field(default_factory=list)
    # Branches that exist only in simulation: never read from data.
    mc_only: list[str] = field(default_factory=list)
    skim: FunctorConfig = field(default_factory=FunctorConfig)
    # Branch-name patterns (fnmatch) kept in skims.
    skim_keep: list[str] = field(default_factory=list)
    objects: dict[str, FunctorConfig] = field(default_factory=dict)
    baseline: dict[str, FunctorConfig] = field(default_factory=dict)
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    observables: dict[str, ObservableConfig] = field(default_factory=dict)
    plot: PlotConfig = field(default_factory=PlotConfig)


@dataclass
class WorkflowConfig:
    """What the job does and how it chunks the work (``workflow`` group)."""

    save_skimmed_output: bool = False
    run_analysis: bool = True
    use_skimmed_input: bool = False
    run_statistics: bool = False
    run_mva_training: bool = False
    run_plots: bool = True  # histogram plots and the run report's throughput plots
    skim_format: SkimFormat = SkimFormat.parquet
    # Where skims are written and, with use_skimmed_input, read from: a local path,
    # s3://bucket/prefix or root://host:port//path.
    skim_dir: str = "${output_dir}/skims"
    chunksize: int = 100000
    max_chunks_per_file: int | None = None
    skip_bad_files: bool = False
    regenerate_metadata: bool = False
    retries: int = 2
    # Events a worker process analyses before it loads the compiled kernels (numba; the same
    # numbers, 25-30 % less CPU per chunk with every variation; ~1.2 s to load, repaid in ~0.6 M
    # events): 0 from the first chunk, null never.
    compiled_kernels_after: int | None = 2000000
    # Only variations listed here (plus nominal) are filled; ["*"] fills every configured one.
    variations: list[str] = field(default_factory=lambda: ["*"])


@dataclass
class PathsConfig:
    """Locations of inputs the job resolves at start-up."""

    generated_data: str = "data/generated"
    shared_data: str = "../shared/data"
    # jsonpog-integration root (``POG/...``); the demo points it at generated files.
    jsonpog: str = "/cvmfs/cms.cern.ch/rsync/cms-nanoAOD/jsonpog-integration"
    generate_corrections: bool = False


@dataclass
class CorrectionInputConfig:
    """Where one input of a correctionlib correction comes from.

    Exactly one of ``field`` (a field of the correction's object, or an event column when the
    correction has no object), ``literal`` (a constant, formatted with era values) or
    ``systematic`` (the slot receiving the nominal/up/down selector) is set.
    """

    field: str | None = None
    literal: str | None = None
    systematic: bool = False
    abs: bool = False


@dataclass
class WeightSourceConfig:
    """An up/down pair of selectors of an event-weight correction.

    In ``sources`` it is a variation of its own (``variation`` is its base name); in
    ``varies_with`` it is applied inside object-variation fills (``variation`` is an fnmatch
    pattern on the object variation's name, and ``{source}`` in the selectors is filled with
    the JES source name).
    """

    variation: str = MISSING
    up: str = MISSING
    down: str = MISSING
    # Objects (e.g. jet flavours) for which the source applies; others keep the nominal.
    flavours: list[int] | None = None


@dataclass
class JesSourceConfig:
    """One JES uncertainty source and the name of its variation."""

    source: str = MISSING
    variation: str = MISSING


@dataclass
class CorrectionConfig:
    """A correction: an object (JEC) or event-weight correction from a correctionlib file.

    Corrections apply to simulation only; data never gets them (the chunk analysis drops the
    era's corrections for data), so there is no per-correction switch.
    """

    type: str = MISSING  # "object" | "event"
    file: str = MISSING
    key: str | None = None
    # event: object the inputs come from (e.g. "muons", "jets"); None -> event columns.
    object: str | None = None
    # event: how per-object values make an event weight: "leading" | "product".
    reduction: str = "product"
    flavour_field: str = "hadronFlavour"
    inputs: dict[str, CorrectionInputConfig] = field(default_factory=dict)
    nominal: str = "nominal"
    sources: list[WeightSourceConfig] = field(default_factory=list)
    varies_with: list[WeightSourceConfig] = field(default_factory=list)
    # object: raw collection corrected, levels applied in sequence, uncertainty sources.
    collection: str | None = None
    levels: list[str] = field(default_factory=list)
    uncertainty_key: str | None = None
    jes_sources: list[JesSourceConfig] = field(default_factory=list)
    level_inputs: dict[str, str] = field(default_factory=dict)
    # object: the field corrected ("@pt" in level_inputs is its running value), the fields
    # scaled by the same factor, and the stored fraction that undoes the NanoAOD correction.
    target: str = "pt"
    also_scaled: list[str] = field(default_factory=lambda: ["mass"])
    raw_factor: str = "rawFactor"


@dataclass
class ConstantConfig:
    """A number read from a correction file, e.g. ``deepJet_wp_values("M")``."""

    file: str = MISSING
    key: str = MISSING
    args: list[str] = field(default_factory=list)


@dataclass
class CorrectionsConfig:
    """Corrections keyed by era (``corrections`` group).

    ``definitions`` holds each correction once, with ``{folder}``, ``{jec_campaign}``,
    ``{pileup_key}``, ``{trigger_sf_key}``, ``{era}`` and ``{year}`` placeholders filled from the
    era's constants; ``by_era`` names the corrections applied to each era's simulation.
    """

    definitions: dict[str, CorrectionConfig] = field(default_factory=dict)
    by_era: dict[str, list[str]] = field(default_factory=dict)
    # Era constants read from correction files (data and simulation), e.g. the b-tag
    # working point; available to functors as ``@name``.
    constants: dict[str, ConstantConfig] = field(default_factory=dict)


@dataclass
class PrometheusConfig:
    """Optional local Prometheus started by the job so a user sees numbers live."""

    enabled: bool = False
    port: int = 0
    # Seconds the server stays up after the job, to look at the numbers (Ctrl-C ends it early).
    keep_running: float = 0.0
    scrape_interval: str = "5s"
    # Recording/alert rule files; empty = the chart's rules.yaml (source checkout).
    rule_files: list[str] = field(default_factory=list)


@dataclass
class RootConfig:
    """The whole job configuration."""

    name: str = "demo"
    output_dir: str = "outputs/${name}"
    log_level: LogLevel = LogLevel.INFO
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    # Restrict the run to these datasets (fnmatch patterns); empty = all.
    dataset_selection: list[str] = field(default_factory=list)
    eras: dict[str, EraConfig] = field(default_factory=dict)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    corrections: CorrectionsConfig = field(default_factory=lambda: CorrectionsConfig())
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    # Optional groups: None unless the configuration selects them (conf/statistics, conf/mva,
    # conf/inspect); each is typed by its own schema module under intccms.config.
    statistics: StatisticsConfig | None = None
    mva: MvaConfig | None = None
    inspect: InspectConfig | None = None
    # conf/processor group: a coffea processor run instead of the analysis (conf/processor.yaml).
    # Typed by intccms.config.processor.ProcessorConfig at start-up (validate_config): its YAML
    # key ``class`` is a Python keyword, which no dataclass field can be.
    processor: Any = None
