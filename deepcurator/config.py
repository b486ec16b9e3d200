"""Configuration: one source of truth.

Defaults live in the dataclasses below; a YAML file overrides them; ``DEEPCURATOR_<SECTION>_<KEY>``
environment variables override both (for example ``DEEPCURATOR_STORE_PATH=/data``,
``DEEPCURATOR_S3_BUCKET=my-bucket``, ``DEEPCURATOR_DOWNLOAD_WORKERS=16``). The file is the
first of (:func:`find_file`): ``--config FILE``, ``$DEEPCURATOR_CONFIG``, ``./config.yml``, and
``config.yml`` in the user's config folder (:func:`user_config_file`: on Linux
``$XDG_CONFIG_HOME/deepcurator`` or ``~/.config/deepcurator``, on macOS
``~/Library/Application Support/deepcurator``, on Windows ``%APPDATA%\\deepcurator``). A loaded
configuration knows where each value came from (:meth:`Config.origin`: default, the file, a
variable or a command's flag), which ``deepcurator config`` prints.

Environment values are read by the type of their key, not as YAML: a string key takes the
text verbatim (``DEEPCURATOR_S3_PREFIX=0755`` is ``"0755"``), an integer, number or true/false
key parses it (or fails naming the variable), and an empty value unsets an optional key.

Loading validates: an unknown key, a value of the wrong type or out of range, or an unreadable
file raises :class:`ConfigError` with a one-line message naming the key. Messages never show
the value of a secret key (see :func:`is_secret`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepcurator.errors import ConfigError
from deepcurator.scores import AGGREGATIONS
from deepcurator.shipped import DATA_SOURCES, DISCOGS_SOURCE

ENV_PREFIX = "DEEPCURATOR_"
DEFAULT_FILE = "config.yml"
_SECRET_NAME = re.compile(r"secret|token|passw(?:or)?d|key", re.I)
_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a finite number", str: "a string"}
_ENV_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


@dataclass
class StoreConfig:
    """The local store: a folder (used when no S3 bucket is configured).

    ``shared``: the folder is the same on every machine (a network mount), so Dask workers may
    use it; without it a local store is refused when a Dask scheduler is set.
    """

    path: str = "data"
    shared: bool = False


@dataclass
class S3Config:
    """S3 store. Keys follow the original project (region, access_key, secret, bucket).

    Without ``access_key``/``secret`` boto3's default credential chain applies.
    """

    bucket: str | None = None
    region: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    access_key: str | None = None
    secret: str | None = None
    multipart_threshold_mb: int = 64


@dataclass
class ExecutorConfig:
    """Where per-track work runs: local processes, or a Dask scheduler when an address is set.

    ``connect_timeout_s``: how long to wait for the scheduler, and for a first worker, before
    giving up with one line.
    """

    dask_scheduler: str | None = None
    connect_timeout_s: float = 30.0


@dataclass
class LabelsConfig:
    dataset: str = "dataset.csv"  # relative: the working directory, else the project's folder (shipped)
    data_source: str = DISCOGS_SOURCE  # discogs, or demo (the synthetic corpus): recorded with every run
    n: int = 15000
    prior_weight: float = 30.0
    outlier_quantile: float = 0.99
    weight_ratio: float = 1.0
    weight_rating: float = 1.0
    weight_price: float = 1.0
    shared_ids: str = "drop"  # a video on several releases: highest, mean, or drop (docs/REFERENCE.md, "Labels")


SHARED_ID_RULES = ("highest", "mean", "drop")


@dataclass
class DownloadConfig:
    url_template: str = "https://www.youtube.com/watch?v={id}"
    workers: int = 8
    bitrate_kbps: int = 128
    keep_source: bool = False
    max_duration_s: float = 1200.0
    timeout_s: float = 60.0
    retries: int = 3
    sleep_interval_s: float = 0.0
    max_sleep_interval_s: float = 0.0
    sleep_requests_s: float = 0.0
    rate_limit: str | None = None
    cookies: str | None = None
    ffmpeg: str | None = None
    rate_limit_backoff_s: float = 120.0
    rate_limit_retries: int = 3


@dataclass
class ProcessConfig:
    workers: int = 0  # 0: one per core
    decode_timeout_s: float = 120.0
    max_duration_s: float = 1800.0  # longer tracks keep their first max_duration_s seconds; 0: all
    silence_dbfs: float = -80.0  # a track whose loudest sample is at or below this is "silent"


@dataclass
class TrainConfig:
    width: float = 1.0
    batch_size: int = 16
    epochs: int = 30
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.01  # cosine decay ends at learning_rate × this
    patience: int = 5
    seed: int = 1234
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    random_crops: bool = True
    head: str = "flatten"  # flatten (Choi et al.) or global_max (training/model.py)
    cache_dir: str | None = None
    split_by: str = "track"  # track, artist or label: no artist (label) in two splits


@dataclass
class DatasetConfig:
    """Rebuilding dataset.csv from a Discogs releases dump and the Discogs API.

    ``token`` is a personal access token (secret: never printed, redacted by ``to_dict``;
    ``DEEPCURATOR_DATASET_TOKEN`` sets it). ``styles``, ``years`` and ``formats`` are
    comma-separated filters (``"Techno,House"``, ``"1990-1999,2005"``, ``"Vinyl"``); empty
    keeps everything. ``rate_window_s`` is the length of the API's quota window in seconds
    (Discogs: a moving 60-s window); the per-window limit itself comes from the answers'
    ``X-Discogs-Ratelimit`` headers, capped by ``requests_per_minute`` when set.
    """

    dump: str | None = None  # discogs_YYYYMMDD_releases.xml.gz
    api_url: str = "https://api.discogs.com"
    token: str | None = field(default=None, repr=False)
    user_agent: str = "DeepCurator/0.1 +https://github.com/deepcurator"
    genre: str = "Electronic"
    styles: str = ""
    years: str = ""
    formats: str = ""
    currency: str = "USD"  # lowest_price is asked for in this currency (curr_abbr)
    max_age_days: float | None = None  # refetch cached answers older than this; None: never
    cache: str = "discogs-cache.sqlite"
    output: str = "dataset.csv"
    requests_per_minute: int | None = None  # a cap below the quota the headers announce
    rate_window_s: float = 60.0
    timeout_s: float = 30.0
    max_retries: int = 5  # per release, on 429, 5xx and network errors
    retry_backoff_s: float = 5.0  # first wait after a 429/5xx without Retry-After, doubled each time


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 5000
    model: str = "runs/latest"
    aggregation: str = "mean"
    top_k: int = 5
    max_upload_mb: float = 50.0
    max_duration_s: float = 900.0
    over_duration: str = "reject"  # reject (413) or truncate (score the first max_duration_s)
    decode_timeout_s: float = 30.0
    read_timeout_s: float = 15.0  # a client that sends nothing for this long is answered 400
    tf_threads: int = 0  # TensorFlow intra-op threads per process; 0 = one per core
    model_cache_dir: str | None = None  # downloaded models; default ~/.cache/deepcurator/models
    model_sha256: str | None = None  # the model file's sha256: checked after a download and on every start
    access_log: str = "text"  # one line per request with its id: text, json (JSON lines) or off


@dataclass
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    s3: S3Config = field(default_factory=S3Config)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)

    def origin(self, key: str) -> str:
        """Where the value of ``key`` (``section.key``) came from: ``default``, ``file PATH``,
        ``environment VARIABLE`` or ``flag --NAME`` (a configuration built by :func:`from_dict`
        has only defaults)."""
        origins: dict[str, str] = getattr(self, "_origins", {})
        return origins.get(key, "default")

    def set_by_flag(self, key: str, value: Any, flag: str) -> None:
        """Set ``key`` (``section.key``) from a command's flag ``flag``, and remember so."""
        section, name = key.split(".", 1)
        setattr(getattr(self, section), name, value)
        object.__setattr__(self, "_origins", {**getattr(self, "_origins", {}), key: f"flag {flag}"})

    @property
    def file(self) -> tuple[Path | None, str]:
        """The file this configuration was read from (None: none) and how it was found."""
        found: tuple[Path | None, str] = getattr(self, "_file", (None, ""))
        return found

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """The configuration as plain data; secrets are replaced by ``***`` when ``redact``."""
        data = dataclasses.asdict(self)
        if redact:
            for section, values in data.items():
                for key, value in values.items():
                    if value and is_secret(f"{section}.{key}"):
                        values[key] = "***"
        return data


def is_secret(where: str) -> bool:
    """Whether the config key ``where`` (``section.key``) holds a credential: its name says
    secret, token, password or key (``s3.secret``, ``s3.access_key``)."""
    return bool(_SECRET_NAME.search(where.rsplit(".", 1)[-1]))


def shown(where: str, value: Any, with_type: bool = True) -> str:
    """``value`` of the config key ``where`` as an error message may show it: its repr (after
    its type when ``with_type``), but never the value of a secret key."""
    kind = f"{type(value).__name__} " if with_type else ""
    return f"{kind}(value hidden: a secret)" if is_secret(where) else f"{kind}{value!r}"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The type behind ``annotation`` and whether it is optional (``X | None``)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` coerced to ``annotation`` or raise a ConfigError naming ``where``."""
    hint, optional = _unwrap(annotation)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{where}' must not be empty")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value):
            return float(value)
    elif hint is str:  # noqa: SIM102 - the same shape as the branches above
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"config key '{where}' must be {_TYPE_NAMES.get(hint, hint)}, got {shown(where, value)}")


def _finite(value: float) -> bool:
    """Whether ``value`` is a finite float (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _apply(section_obj: Any, values: dict[str, Any], section: str) -> None:
    hints = typing.get_type_hints(type(section_obj))
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"unknown config key '{section}.{key}' (known: {known})")
        setattr(section_obj, key, _check_type(value, hints[key], f"{section}.{key}"))


def from_dict(data: dict[str, Any] | None) -> Config:
    """Build a validated :class:`Config` from nested plain data (as read from YAML)."""
    cfg = Config()
    if data is None:
        return cfg
    if not isinstance(data, dict):
        raise ConfigError("config file must hold a mapping of sections")
    sections = typing.get_type_hints(Config)
    for section, values in data.items():
        if section not in sections:
            raise ConfigError(f"unknown config section '{section}' (known: {', '.join(sections)})")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        _apply(getattr(cfg, section), values, section)
    _validate(cfg)
    return cfg


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``DEEPCURATOR_<SECTION>_<KEY>`` variables as nested data, each parsed by its
    key's type (:func:`_parse_env`)."""
    out: dict[str, dict[str, Any]] = {}
    for section, section_type in typing.get_type_hints(Config).items():
        for key, annotation in typing.get_type_hints(section_type).items():
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name in environ:
                out.setdefault(section, {})[key] = _parse_env(name, environ[name], annotation, f"{section}.{key}")
    return out


def _parse_env(name: str, raw: str, annotation: Any, where: str) -> Any:
    """The value of the environment variable ``name`` for the config key ``where``: a string
    verbatim, an integer, finite number or true/false (yes/no, on/off, 1/0) parsed, and
    ``None`` for an empty value of an optional key. Raises a ConfigError naming ``name``."""
    hint, optional = _unwrap(annotation)
    if raw == "" and optional:
        return None
    if hint is str:
        return raw
    text = raw.strip()
    if hint is bool and text.lower() in _ENV_BOOLS:
        return _ENV_BOOLS[text.lower()]
    if hint is int:
        try:
            return int(text)
        except ValueError:
            pass
    if hint is float:
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
    got = shown(where, raw, with_type=False)
    raise ConfigError(f"environment variable {name} must be {_TYPE_NAMES.get(hint, hint)}, got {got}")


def _validate(cfg: Config) -> None:
    if cfg.serve.aggregation not in AGGREGATIONS:
        raise ConfigError(f"config key 'serve.aggregation' must be one of {', '.join(AGGREGATIONS)}")
    if cfg.serve.over_duration not in ("reject", "truncate"):
        raise ConfigError("config key 'serve.over_duration' must be reject or truncate")
    if cfg.serve.access_log not in ("text", "json", "off"):
        raise ConfigError("config key 'serve.access_log' must be text, json or off")
    if cfg.s3.endpoint_url is not None and not cfg.s3.bucket:
        raise ConfigError("config key 's3.bucket' is missing: S3 settings are given without a bucket")
    if cfg.s3.access_key and not cfg.s3.secret:
        raise ConfigError("config key 's3.secret' is missing: s3.access_key needs it")
    if not 0.5 < cfg.labels.outlier_quantile <= 1.0:
        raise ConfigError("config key 'labels.outlier_quantile' must be in (0.5, 1]")
    _validate_labels(cfg.labels)
    if not 1 <= cfg.serve.port <= 65535:
        raise ConfigError("config key 'serve.port' must be between 1 and 65535")
    if cfg.executor.connect_timeout_s <= 0:
        raise ConfigError("config key 'executor.connect_timeout_s' must be positive")
    if cfg.process.decode_timeout_s <= 0:
        raise ConfigError("config key 'process.decode_timeout_s' must be positive")
    if cfg.process.max_duration_s < 0:
        raise ConfigError("config key 'process.max_duration_s' must be 0 (no limit) or positive")
    d = cfg.download
    if "{id}" not in d.url_template:
        raise ConfigError("config key 'download.url_template' must contain {id}")
    if not 32 <= d.bitrate_kbps <= 320:
        raise ConfigError("config key 'download.bitrate_kbps' must be between 32 and 320")
    for key in ("workers", "timeout_s", "max_duration_s"):
        if getattr(d, key) <= 0:
            raise ConfigError(f"config key 'download.{key}' must be positive")
    for key in ("retries", "rate_limit_retries", "sleep_interval_s", "max_sleep_interval_s", "sleep_requests_s",
                "rate_limit_backoff_s"):
        if getattr(d, key) < 0:
            raise ConfigError(f"config key 'download.{key}' must not be negative")
    if cfg.train.split_by not in ("track", "artist", "label"):
        raise ConfigError("config key 'train.split_by' must be track, artist or label")
    if cfg.train.head not in ("flatten", "global_max"):
        raise ConfigError("config key 'train.head' must be flatten or global_max")
    _validate_dataset(cfg.dataset)


def _validate_dataset(d: DatasetConfig) -> None:
    if not d.genre.strip():
        raise ConfigError("config key 'dataset.genre' must not be empty")
    if not d.api_url.startswith(("http://", "https://")):
        raise ConfigError("config key 'dataset.api_url' must be an http(s) URL")
    if not d.user_agent.strip():
        raise ConfigError("config key 'dataset.user_agent' must not be empty (Discogs requires one)")
    for key in ("rate_window_s", "timeout_s"):
        if getattr(d, key) <= 0:
            raise ConfigError(f"config key 'dataset.{key}' must be positive")
    for key in ("max_retries", "retry_backoff_s"):
        if getattr(d, key) < 0:
            raise ConfigError(f"config key 'dataset.{key}' must not be negative")
    if d.requests_per_minute is not None and d.requests_per_minute < 1:
        raise ConfigError("config key 'dataset.requests_per_minute' must be at least 1")
    if d.max_age_days is not None and d.max_age_days < 0:
        raise ConfigError("config key 'dataset.max_age_days' must not be negative")
    for part in filter(None, (p.strip() for p in d.years.split(","))):
        lo, _, hi = part.partition("-")
        if not (lo.strip().isdigit() and (not hi or hi.strip().isdigit())):
            raise ConfigError(f"config key 'dataset.years' must be years or ranges like 1990-1999, got {part!r}")


def _validate_labels(c: LabelsConfig) -> None:
    if c.data_source not in DATA_SOURCES:
        raise ConfigError(f"config key 'labels.data_source' must be {' or '.join(DATA_SOURCES)}, got {c.data_source!r}")
    if c.n < 1:
        raise ConfigError("config key 'labels.n' must be at least 1")
    if c.prior_weight < 0:
        raise ConfigError("config key 'labels.prior_weight' must not be negative")
    weights = ("weight_ratio", "weight_rating", "weight_price")
    for key in weights:
        if getattr(c, key) < 0:
            raise ConfigError(f"config key 'labels.{key}' must not be negative")
    if not any(getattr(c, key) > 0 for key in weights):
        raise ConfigError("config keys 'labels.weight_*' must not all be 0")
    if c.shared_ids not in SHARED_ID_RULES:
        raise ConfigError(f"config key 'labels.shared_ids' must be one of {', '.join(SHARED_ID_RULES)}")


def _merge(base: dict[str, Any], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in (base or {}).items()}
    for section, values in extra.items():
        current = merged.get(section)
        merged[section] = {**(current if isinstance(current, dict) else {}), **values}
    return merged


def user_config_file() -> Path:
    """``config.yml`` in the user's config folder: ``$XDG_CONFIG_HOME/deepcurator`` (else
    ``~/.config/deepcurator``) on Linux, ``~/Library/Application Support/deepcurator`` on macOS,
    ``%APPDATA%\\deepcurator`` on Windows."""
    import platformdirs

    return Path(platformdirs.user_config_dir("deepcurator", appauthor=False, roaming=True)) / DEFAULT_FILE


def search_order() -> list[str]:
    """Where :func:`find_file` looks, in order, as a user reads it."""
    return ["--config FILE", f"${ENV_PREFIX}CONFIG", f"./{DEFAULT_FILE}", str(user_config_file())]


def find_file(path: str | os.PathLike[str] | None = None,
              environ: typing.Mapping[str, str] | None = None) -> tuple[Path | None, str]:
    """The config file to read and how it was found: ``path`` (the ``--config`` flag), else
    ``$DEEPCURATOR_CONFIG`` (either must exist), else ``./config.yml``, else the user's
    (:func:`user_config_file`) when it exists; ``(None, "")`` when there is none."""
    environ = os.environ if environ is None else environ
    if path:
        how, file = "--config", Path(path)
    elif environ.get(f"{ENV_PREFIX}CONFIG"):
        how, file = f"${ENV_PREFIX}CONFIG", Path(environ[f"{ENV_PREFIX}CONFIG"])
    else:
        for how, file in ((f"./{DEFAULT_FILE}", Path(DEFAULT_FILE)), ("the user's config folder", user_config_file())):
            if file.exists():
                return file, how
        return None, ""
    if not file.exists():
        raise ConfigError(f"config file {file} does not exist")
    return file, how


def load(path: str | os.PathLike[str] | None = None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Load the configuration: the file :func:`find_file` finds, if any, with the environment's
    overrides on top. The result records where each value came from (:meth:`Config.origin`)."""
    environ = os.environ if environ is None else environ
    file, how = find_file(path, environ)
    data = _read_file(file) if file is not None else {}
    env = _env_overrides(environ)
    cfg = from_dict(_merge(data, env))
    origins = {f"{section}.{key}": f"file {file.absolute() if file else file}"
               for section, values in data.items() if isinstance(values, dict) for key in values}
    origins |= {f"{section}.{key}": f"environment {ENV_PREFIX}{section.upper()}_{key.upper()}"
                for section, values in env.items() for key in values}
    object.__setattr__(cfg, "_origins", origins)
    object.__setattr__(cfg, "_file", (file.absolute() if file is not None else None, how))
    return cfg


def _read_file(file: Path) -> dict[str, Any]:
    """The sections of the YAML file ``file`` (an empty file has none); a ConfigError when
    it is a folder, unreadable, not UTF-8 text, not YAML or not a mapping."""
    if file.is_dir():
        raise ConfigError(f"{file}: is a folder, not a config file")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start + 1} is not UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: must hold a mapping of sections, got {type(data).__name__}")
    return data
