"""Errors a user can act on: the CLI prints them as one line, without a traceback."""


class DeepCuratorError(Exception):
    """Base class for errors reported to the user as a single readable line."""


class ConfigError(DeepCuratorError):
    """The configuration is invalid (unknown key, wrong type, missing value)."""


class StoreError(DeepCuratorError):
    """The store cannot be reached or an object is missing."""


class InputError(DeepCuratorError):
    """An input file (dataset, audio) is unusable."""


class TooLong(InputError):
    """Audio longer than the configured maximum duration (a download, an upload, a file to rate)."""


class ClusterError(DeepCuratorError):
    """The Dask cluster cannot do the work: no scheduler, no worker, a worker that cannot reach
    the store or run ffmpeg, or the scheduler lost in the middle of a stage."""
