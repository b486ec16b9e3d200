"""What the benchmarks share: generated audio and a media server, from the package
(:mod:`deepcurator.demo.media`, the same definitions the tests use), never from tests/.

Import it from a bench script (its folder is ``sys.path[0]`` when run as
``python bench/bench_x.py``) after putting the repository root on ``sys.path``:

    from _common import make_audio, MediaServer
"""

from __future__ import annotations

from deepcurator.demo.media import CODECS, MediaServer, make_audio

__all__ = ["CODECS", "MediaServer", "make_audio"]
