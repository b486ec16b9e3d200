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
