"""Per-item stages on a Dask cluster (``executor.dask_scheduler``), safe by construction.

:func:`deepcurator.parallel.make_executor` hands out a :class:`ClusterExecutor` when a
scheduler is set; a stage then asks this module for what runs beside its tasks:

- :func:`connect`: refuses a local store unless ``store.shared`` says every worker sees the
  same folder, connects within ``executor.connect_timeout_s``, waits for a first worker, and
  turns a scheduler lost mid-stage into one line (:class:`~deepcurator.errors.ClusterError`;
  items finished so far are in the store, so a rerun resumes);
- :func:`worker_store`: the store as tasks carry it, without credentials (each worker uses its
  own credential chain: environment, ``~/.aws``, an instance role), after checking that every
  connected worker can run its own ffmpeg and read an object the client has just written;
- :class:`SharedPause`: a pause every worker keeps, in a ``distributed.Variable`` on the
  scheduler (the wall-clock time until which new downloads wait), so a 429 seen by one worker
  pauses the whole cluster;
- :class:`HostSlots`: at most ``n`` items at once per machine, a ``distributed.Semaphore`` per
  host name (``download.workers``: YouTube paces per IP, not per process).

Nothing here imports ``distributed`` until a cluster is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Executor, Future
from dataclasses import dataclass
from typing import Any

from deepcurator import layout
from deepcurator.config import Config
from deepcurator.errors import ClusterError, ConfigError, DeepCuratorError
from deepcurator.scratch import owner_tag
from deepcurator.store import LocalStore, Store

logger = logging.getLogger(__name__)

PAUSE_POLL_S = 1.0  # a paused worker looks at the shared pause at least this often (seconds)
PAUSE_READ_TIMEOUT_S = 30.0  # a shared pause that cannot be read for this long is over


class ClusterExecutor(Executor):
    """The executor of a Dask client (tasks submitted with ``pure=False``, so two items' work is
    never merged), with the client and the scheduler's address at hand."""

    def __init__(self, client: Any, address: str) -> None:
        self.client = client
        self.address = address
        self._inner = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait)


def is_cluster(executor: Executor) -> bool:
    """Whether ``executor`` runs its tasks on a Dask cluster."""
    return isinstance(executor, ClusterExecutor)


def check_store(cfg: Config, store: Store) -> None:
    """Refuse, in one line, a local folder as the store of a cluster run unless it is declared
    the same on every machine (``store.shared``): workers elsewhere would write to their own disks."""
    if isinstance(store, LocalStore) and not cfg.store.shared:
        raise ConfigError(
            f"executor.dask_scheduler is set but the store is the local folder {store.root}: workers on other "
            "machines would write to their own disks; use an S3 store (s3.bucket), or set store.shared: true "
            "if that folder is the same on every worker (a network mount)")


@contextlib.contextmanager
def connect(cfg: Config, store: Store | None = None) -> Iterator[ClusterExecutor]:
    """A :class:`ClusterExecutor` on the scheduler ``executor.dask_scheduler``, once a first
    worker is connected. ``store`` (the stage's) is checked first (:func:`check_store`)."""
    address = cfg.executor.dask_scheduler
    assert address, "connect() needs executor.dask_scheduler"
    if store is not None:
        check_store(cfg, store)
    from distributed import Client

    timeout = cfg.executor.connect_timeout_s
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({_reason(exc)}); "
                           "start it with `dask scheduler`, or check executor.dask_scheduler") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise ClusterError(f"no Dask worker connected to {address} within {timeout:g} s; start workers with "
                               f"`dask worker {address}` (README, \"Scaling out on a Dask cluster\")") from None
        executor = ClusterExecutor(client, address)
        try:
            yield executor
        except CancelledError:
            # The client cancels every pending task when it loses the scheduler.
            raise ClusterError(f"lost the Dask scheduler at {address} in the middle of the stage; what was "
                               "finished is in the store: start the scheduler and rerun to resume") from None
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)


class _NoCancelledTracebacks(logging.Filter):
    """Drops what ``distributed`` logs when a client that lost its scheduler is closed: the
    traceback of its cancelled reconnection, and "Failed to reconnect to scheduler after N
    seconds" (it did not wait: it was closed). The one line of :class:`ClusterError` says
    what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError)
                    or str(record.msg).startswith("Failed to reconnect to scheduler"))


# distributed's log_errors writes to the logger of the module of the failed coroutine.
for _name in ("distributed.client", "distributed.utils"):
    if not any(isinstance(f, _NoCancelledTracebacks) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_NoCancelledTracebacks())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def worker_store(executor: Executor, store: Store, *, ffmpeg: str | None = None,
                 files: Sequence[str] = ()) -> Store:
    """The store as the tasks of ``executor`` carry it: ``store`` itself on a local pool; on a
    cluster, the store without credentials, once every connected worker has shown that it can
    run its own ffmpeg (``ffmpeg``: the configured one, else the worker's default), see the
    ``files`` (a cookies file) and read, with its own credentials, an object the client has
    just written there. A worker that cannot is named in a one-line :class:`ClusterError`."""
    if not isinstance(executor, ClusterExecutor):
        return store
    shipped = store.without_credentials()
    key = f"{layout.CLUSTER_CHECK_PREFIX}{owner_tag()}-{secrets.token_hex(6)}"
    token = uuid.uuid4().bytes
    store.put_bytes(key, token)
    try:
        answers = executor.client.run(check_worker, shipped, key, token, ffmpeg, list(files), on_error="return")
    finally:
        store.delete(key)
    for address, answer in sorted(answers.items()):
        problem = answer if isinstance(answer, str) else (
            f"the check failed ({type(answer).__name__}: {answer})" if isinstance(answer, BaseException) else None)
        if problem:
            raise ClusterError(f"Dask worker {address} cannot take part: {problem}")
    logger.info("Dask cluster at %s: %d worker(s), each running its own ffmpeg and reading %s with its own "
                "credentials", executor.address, len(answers), shipped.describe())
    return shipped


def check_worker(store: Store, key: str, token: bytes, ffmpeg: str | None, files: list[str]) -> str | None:
    """Run on each worker by :func:`worker_store`: None when this worker can work on items,
    else what stops it (one line). On the way, the scratch folders that killed workers of this
    machine left in its temp folder are removed (:func:`deepcurator.scratch.remove_stale`)."""
    from deepcurator.audio import ffmpeg_exe
    from deepcurator.scratch import remove_stale

    remove_stale()
    host = socket.gethostname()
    exe = ffmpeg_exe(ffmpeg)
    try:
        subprocess.run([exe, "-nostdin", "-version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"on {host}, ffmpeg {exe} does not run ({_reason(exc)}); install the package there (imageio-ffmpeg " \
               "brings one) or set download.ffmpeg / DEEPCURATOR_FFMPEG for that worker"
    for path in files:
        if not os.path.isfile(path):
            return f"on {host}, {path} is not a file"
    try:
        seen = store.get_bytes(key)
    except DeepCuratorError as exc:
        return (f"on {host}, it cannot read the store {store.describe()} ({exc}); workers use their own credentials "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role), never the client's")
    if seen != token:
        return f"on {host}, {store.describe()} is another store than the client's"
    return None


# --- coordination between workers, through the scheduler --------------------------------------

def _worker_id() -> str:
    """The Dask worker this task runs on (several share a process in an in-process cluster)."""
    from distributed import get_worker

    return str(get_worker().id)


@functools.cache
def _variable(name: str, worker: str) -> Any:
    """The ``distributed.Variable`` ``name`` through ``worker``'s client (made once)."""
    from distributed import Variable

    return Variable(name)


@dataclass(frozen=True)
class SharedPause:
    """A pause every worker of the cluster keeps: the wall-clock time (``time.time()``, so the
    machines' clocks are taken to agree, as NTP keeps them to milliseconds) until which no new
    item starts, in the ``distributed.Variable`` ``name`` on the scheduler. The same interface
    as a process's own pacer: :meth:`wait`, :meth:`pause`."""

    name: str

    def until(self) -> float:
        """The end of the pause in force (0 when the run that made the pause is over)."""
        try:
            return float(_variable(self.name, _worker_id()).get(timeout=PAUSE_READ_TIMEOUT_S))
        except TimeoutError:  # the variable is gone: its run ended (interrupted) while this task ran
            return 0.0

    def wait(self) -> None:
        """Return once no pause is in force (looking again at least every :data:`PAUSE_POLL_S`)."""
        while True:
            left = self.until() - time.time()
            if left <= 0:
                return
            time.sleep(min(left, PAUSE_POLL_S))

    def pause(self, seconds: float) -> None:
        """Pause every worker for ``seconds`` from now (a longer pause in force is kept)."""
        _variable(self.name, _worker_id()).set(max(self.until(), time.time() + seconds))


@contextlib.contextmanager
def shared_pause(executor: Executor, stage: str) -> Iterator[SharedPause | None]:
    """A :class:`SharedPause` for one run of ``stage`` on the cluster of ``executor`` (None on a
    local pool, whose workers share the process's own pacer); removed at the end of the run."""
    if not isinstance(executor, ClusterExecutor):
        yield None
        return
    from distributed import Variable

    name = f"deepcurator-{stage}-pause-{uuid.uuid4().hex[:12]}"
    variable = Variable(name, client=executor.client)
    variable.set(0.0)
    try:
        yield SharedPause(name)
    finally:
        with contextlib.suppress(Exception):
            variable.delete()


@functools.cache
def _semaphore(name: str, leases: int, worker: str) -> Any:
    """The ``distributed.Semaphore`` ``name`` through ``worker``'s connection (made once)."""
    from distributed import Semaphore

    return Semaphore(max_leases=leases, name=name)


@dataclass(frozen=True)
class HostSlots:
    """At most ``per_host`` items of ``stage`` at once on each machine, whatever the number of
    worker processes and threads there: a ``distributed.Semaphore`` named for the host. A
    worker that dies loses its leases after ``distributed.scheduler.locks.lease-timeout``."""

    stage: str
    per_host: int

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        name = f"deepcurator-{self.stage}-slots-{socket.gethostname()}-{self.per_host}"
        with _semaphore(name, self.per_host, _worker_id()):
            yield


def host_slots(executor: Executor, stage: str, per_host: int) -> HostSlots | None:
    """:class:`HostSlots` for ``stage`` on a cluster with a limit (``per_host`` > 0); None on a
    local pool (its size is the limit) or without one."""
    return HostSlots(stage, per_host) if isinstance(executor, ClusterExecutor) and per_host > 0 else None


@contextlib.contextmanager
def holding(slots: HostSlots | None) -> Iterator[None]:
    """``slots.hold()``, or nothing when ``slots`` is None."""
    if slots is None:
        yield
    else:
        with slots.hold():
            yield
