"""The HTTP media server of the download tests: :class:`deepcurator.demo.media.MediaServer`
(see its module for what it serves and how it misbehaves on purpose)."""

from __future__ import annotations

from deepcurator.demo.media import TYPES
from deepcurator.demo.media import MediaServer as AudioServer

__all__ = ["TYPES", "AudioServer"]
