"""A paced client for the Discogs API's release resource (``GET /releases/{id}``).

Discogs limits requests per token (per IP without one) over a moving window of 60 s: 60
authenticated, 25 without, at the time of writing. Every answer carries
``X-Discogs-Ratelimit`` (the limit), ``X-Discogs-Ratelimit-Used`` and
``X-Discogs-Ratelimit-Remaining``; beyond the limit the API answers 429.

:class:`Pacer` spaces requests evenly at ``window / (limit - 1)`` seconds, with the limit
read from the headers (and capped by ``requests_per_minute``), never sends more than that
within any window of its own send times, and waits when ``Remaining`` reaches 0 (another
client on the same token). :class:`DiscogsClient` backs off exponentially on 429, 5xx and
network errors (``Retry-After`` wins when given) and records a release as failed after
``max_retries``.

Plain ``requests``, not python3-discogs-client: that library (2.x) sends a user token as a
``?token=`` query parameter (so it lands in URLs, logs and error messages), only backs off
*after* a 429 (it records the quota headers but does not pace by them), does not retry 5xx,
and would add two dependencies (oauthlib, python-dateutil) for one GET.

The token goes only into the ``Authorization`` header; it is never logged, stored or put in a
URL, and ``repr`` of the client does not show it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from deepcurator.config import DatasetConfig
from deepcurator.discogs.cache import Stats
from deepcurator.errors import DeepCuratorError

log = logging.getLogger(__name__)

LIMIT_AUTHENTICATED = 60  # requests per window before the first answer says otherwise
LIMIT_ANONYMOUS = 25


class ApiError(DeepCuratorError):
    """The API refuses every request (a bad token, a wrong URL): the run cannot go on."""


@dataclass
class Answer:
    """The outcome for one release: ``status`` ``ok`` (with ``stats``), ``not_found`` (404)
    or ``failed`` (``reason``: ``http 503``, ``network error``, ``bad answer``...)."""

    status: str
    stats: Stats | None = None
    reason: str | None = None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


class Pacer:
    """Spaces requests so that no window of ``window_s`` seconds holds more than the quota.

    ``limit`` starts at ``default_limit`` and follows ``X-Discogs-Ratelimit``; ``cap_per_minute``
    (optional) lowers it to ``cap × window_s / 60``. One request per window is kept in hand
    as a margin for clock and network jitter between this side and the server's window.
    """

    def __init__(self, window_s: float, default_limit: int, cap_per_minute: int | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.window_s = window_s
        self.header_limit = default_limit
        self.cap = None if cap_per_minute is None else max(1, math.floor(cap_per_minute * window_s / 60))
        self.clock, self.sleep = clock, sleep
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0
        self.remaining: int | None = None
        self.waited_s = 0.0

    @property
    def limit(self) -> int:
        """Requests allowed per window: the headers' limit, under the cap."""
        return max(1, min(self.header_limit, self.cap) if self.cap else self.header_limit)

    @property
    def budget(self) -> int:
        """Requests this pacer sends per window (the limit less one in hand)."""
        return max(1, self.limit - 1)

    @property
    def interval_s(self) -> float:
        """Seconds between requests in the steady state: ``window / budget``."""
        return self.window_s / self.budget

    def wait(self) -> None:
        """Sleep until the next request may go, then count it as sent."""
        now = self.clock()
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()
        t = now
        if self.sent:
            t = max(t, self.sent[-1] + self.interval_s)
        if len(self.sent) >= self.budget:
            t = max(t, self.sent[-self.budget] + self.window_s)
        t = max(t, self.blocked_until)
        if t > now:
            self.sleep(t - now)
            self.waited_s += t - now
        self.sent.append(max(t, self.clock()))

    def update(self, headers: Mapping[str, str]) -> None:
        """Follow an answer's quota headers."""
        limit = _header_int(headers, "X-Discogs-Ratelimit")
        if limit and limit > 0:
            self.header_limit = limit
        self.remaining = _header_int(headers, "X-Discogs-Ratelimit-Remaining")
        if self.remaining is not None and self.remaining <= 0:
            now = self.clock()
            # the server's window is full: the next slot frees when its oldest request leaves it
            own = [t for t in self.sent if t > now - self.window_s]
            free_at = own[0] + self.window_s if len(own) >= self.limit else now + self.window_s / self.limit
            self.blocked_until = max(self.blocked_until, free_at)

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a back-off)."""
        self.blocked_until = max(self.blocked_until, self.clock() + seconds)


@dataclass
class ClientCounts:
    """What the client did: requests sent, answers by HTTP status, retries and time waiting."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    network_errors: int = 0
    retries: int = 0
    backoff_s: float = 0.0


class DiscogsClient:
    """Fetches release statistics, paced by the quota headers (see the module docstring)."""

    def __init__(self, cfg: DatasetConfig, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base = cfg.api_url.rstrip("/")
        self.currency = cfg.currency
        self.timeout_s = cfg.timeout_s
        self.max_retries = cfg.max_retries
        self.backoff_s = cfg.retry_backoff_s
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = cfg.user_agent
        self.session.headers["Accept"] = "application/vnd.discogs.v2.discogs+json"
        if cfg.token:
            self.session.headers["Authorization"] = f"Discogs token={cfg.token}"
        default = LIMIT_AUTHENTICATED if cfg.token else LIMIT_ANONYMOUS
        self.pacer = Pacer(cfg.rate_window_s, default, cfg.requests_per_minute, clock, sleep)
        self.sleep = sleep
        self.counts = ClientCounts()

    def __repr__(self) -> str:
        return f"DiscogsClient({self.base!r})"

    def _backoff(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        retry_after = None
        if headers is not None:
            try:
                retry_after = float(headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        if retry_after is not None and retry_after >= 0:
            return retry_after
        return min(self.backoff_s * 2 ** attempt, max(self.pacer.window_s, self.backoff_s))

    def release(self, release_id: int) -> Answer:
        """The statistics of one release; retries 429, 5xx and network errors with back-off.

        Raises :class:`ApiError` on 401 (the token is refused): no release could be fetched.
        """
        url = f"{self.base}/releases/{int(release_id)}"
        reason = "no answer"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.counts.retries += 1
            self.pacer.wait()
            self.counts.requests += 1
            try:
                resp = self.session.get(url, params={"curr_abbr": self.currency}, timeout=self.timeout_s)
            except requests.RequestException as exc:
                self.counts.network_errors += 1
                reason = "network error"
                wait = self._backoff(attempt, None)
                log.info("release %s: %s (%s), retrying in %.1f s", release_id, reason, type(exc).__name__, wait)
                self.pacer.hold(wait)
                self.counts.backoff_s += wait
                continue
            code = resp.status_code
            self.counts.statuses[code] = self.counts.statuses.get(code, 0) + 1
            self.pacer.update(resp.headers)
            if code == 200:
                return self._parse(release_id, resp)
            if code == 404:
                return Answer("not_found", reason="not found (404)")
            if code == 401:
                raise ApiError(f"the Discogs API at {self.base} refused the token (401): check dataset.token")
            reason = f"http {code}"
            if code == 429 or code >= 500:
                wait = self._backoff(attempt, resp.headers)
                log.info("release %s: %s, retrying in %.1f s", release_id, reason, wait)
                self.pacer.hold(wait)
                self.counts.backoff_s += wait
                continue
            return Answer("failed", reason=reason)
        return Answer("failed", reason=reason)

    def _parse(self, release_id: int, resp: requests.Response) -> Answer:
        try:
            data: Any = resp.json()
            community = data["community"]
            rating = community.get("rating") or {}
            price = data.get("lowest_price")
            stats = Stats(
                have=int(community.get("have") or 0),
                want=int(community.get("want") or 0),
                rating_average=float(rating.get("average") or 0.0),
                rating_count=int(rating.get("count") or 0),
                price=None if price is None else float(price),
                currency=self.currency,
                num_for_sale=int(data.get("num_for_sale") or 0),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("release %s: the answer is not a release resource", release_id)
            return Answer("failed", reason="bad answer")
        return Answer("ok", stats)
