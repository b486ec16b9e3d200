"""YouTube video ids: exactly 11 characters of ``A-Z a-z 0-9 _ -`` (the labels stage keeps
only such ids, and the download stage refuses any other id for a YouTube URL template)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

VIDEO_ID = r"[A-Za-z0-9_-]{11}"
VIDEO_ID_RE = re.compile(VIDEO_ID)
_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")


def is_video_id(text: str) -> bool:
    """Whether ``text`` is a well-formed YouTube video id (not whether the video exists)."""
    return VIDEO_ID_RE.fullmatch(text) is not None


def is_youtube_url(url: str) -> bool:
    """Whether ``url`` (a URL or a ``download.url_template``) points at YouTube."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in _HOSTS)
