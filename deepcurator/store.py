"""The store: where stages hand off their outputs (the keys: :mod:`deepcurator.layout`).

One small interface, two backends with the same keys:

- :class:`LocalStore`, a folder (default ``data/``); writes go to a temp file in the same
  folder and are renamed into place, so a key appears only when its object is whole (with
  the mode a plain ``open()`` gives: 0666 less the umask, so another user can read a model);
- :class:`S3Store`, a bucket (optionally under a prefix) through boto3; a PUT or a
  completed multipart upload is atomic on S3 by nature.

Keys are ``/``-separated relative paths such as ``audio/abc.mp3``. Stores are picklable so
that they travel to worker processes (the boto3 client is rebuilt on the other side, once per
process and set of settings: :func:`_s3_client`). A store that travels to another machine (a
Dask worker) travels as :meth:`Store.without_credentials`: bucket, prefix, endpoint and region
only, the worker's own credential chain supplying the keys.
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from deepcurator.config import Config, S3Config
from deepcurator.errors import StoreError
from deepcurator.scratch import owner_gone, owner_tag

TMP_PREFIX = ".tmp-"


def _tmp_prefix() -> str:
    """Temp-file prefix naming the writer (host and pid), so leftovers of a killed writer are known."""
    return f"{TMP_PREFIX}{owner_tag()}-"


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new, empty temp file in ``folder`` named for its writer (:func:`_tmp_prefix` and a
    random hex part, which has no '-'), opened for writing: ``(fd, path)``.

    Created with mode 0666, so the umask alone decides its permissions, as for a plain
    ``open()``; ``tempfile.mkstemp`` would make it 0600, and the renamed object would then be
    unreadable by any other user (a server running as another user than the trainer).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = folder / f"{_tmp_prefix()}{secrets.token_hex(6)}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name in {folder}")


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise StoreError(f"invalid store key {key!r}")
    return key


class Store(ABC):
    """A flat key → bytes store with atomic writes."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` atomically (replacing any object there)."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Upload the local file ``path`` under ``key`` atomically (multipart when large)."""

    @abstractmethod
    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Copy the object ``key`` to the local file ``path`` (written atomically)."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A binary stream reading the object ``key``."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a whole object is stored under ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in lexicographic order (paginated underneath)."""

    @abstractmethod
    def versions(self, prefix: str = "") -> dict[str, str]:
        """Every key starting with ``prefix``, with a tag that changes whenever its object is
        replaced (S3: the ETag; local: size and modification time), from one listing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, for messages (never with credentials)."""

    def get_bytes(self, key: str) -> bytes:
        """The whole object ``key`` as bytes."""
        with self.open(key) as fh:
            return fh.read()

    def local_path(self, key: str) -> Path | None:
        """A path on this machine that holds ``key``'s bytes, when there is one (local store)."""
        return None

    def without_credentials(self) -> Store:
        """This store as another machine may receive it: no secret inside (an S3 store without
        ``access_key``/``secret``, so the receiver's own credential chain applies)."""
        return self

    def remove_stale_temps(self) -> int:
        """Delete temporary files left by writers that were killed; returns how many.

        Objects only appear whole, so this is housekeeping, not repair. S3 uploads leave
        nothing visible (an interrupted multipart upload is never an object).
        """
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class LocalStore(Store):
    """A folder on this machine."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _atomic_target(self, key: str) -> tuple[Path, Path]:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(dest.parent)
        os.close(fd)
        return dest, tmp

    def remove_stale_temps(self) -> int:
        removed = 0
        if not self.root.is_dir():
            return 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(TMP_PREFIX) and owner_gone(name[len(TMP_PREFIX):]):  # .tmp-<host>-<pid>-<random>
                    Path(folder, name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def put_bytes(self, key: str, data: bytes) -> None:
        dest, tmp = self._atomic_target(key)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        dest, tmp = self._atomic_target(key)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        src = self._path(key)
        if not src.is_file():
            raise StoreError(f"{key} is not in the store {self.describe()}")

        def copy(out: IO[bytes]) -> None:
            with open(src, "rb") as fh:
                shutil.copyfileobj(fh, out)

        atomic_write(path, copy)

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise StoreError(f"{key} is not in the store {self.describe()}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return iter(())
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def versions(self, prefix: str = "") -> dict[str, str]:
        tags = {}
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:  # deleted since the listing: not there any more
                continue
            tags[key] = f"{st.st_size}-{st.st_mtime_ns}"
        return tags

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


class S3Store(Store):
    """A bucket (and optional prefix) on S3 or an S3-compatible server."""

    def __init__(self, cfg: S3Config) -> None:
        if not cfg.bucket:
            raise StoreError("S3 store needs a bucket (config key 's3.bucket')")
        self.cfg = cfg
        self.prefix = cfg.prefix.strip("/") + "/" if cfg.prefix.strip("/") else ""
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "prefix": self.prefix, "_client": None}

    def without_credentials(self) -> S3Store:
        if not (self.cfg.access_key or self.cfg.secret):
            return self
        return S3Store(dataclasses.replace(self.cfg, access_key=None, secret=None))

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _s3_client(self.cfg.region, self.cfg.endpoint_url, self.cfg.access_key, self.cfg.secret)
        return self._client

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        threshold = self.cfg.multipart_threshold_mb * 1024 * 1024
        return TransferConfig(multipart_threshold=threshold, multipart_chunksize=max(threshold, 5 * 1024 * 1024))

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _error(self, exc: Exception, key: str) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return StoreError(f"{key} is not in the store {self.describe()}")
            return StoreError(f"S3 error {code} on {key} in {self.describe()}")
        # botocore's messages never carry the secret key; keep only the class and text.
        return StoreError(f"S3 store {self.describe()} unreachable ({type(exc).__name__}: {exc})")

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        try:
            self.client.upload_fileobj(stream, self.cfg.bucket, self._key(key), Config=self._transfer_config())
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, key) from None

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            self.client.upload_file(str(path), self.cfg.bucket, self._key(key), Config=self._transfer_config())
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, key) from None

    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        def fetch(out: IO[bytes]) -> None:
            self.client.download_fileobj(self.cfg.bucket, self._key(key), out, Config=self._transfer_config())

        try:
            atomic_write(path, fetch)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            body = self.client.get_object(Bucket=self.cfg.bucket, Key=self._key(key))["Body"]
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, key) from None
        return io.BytesIO(body.read())

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.cfg.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(exc, key) from None
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, key) from None

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The listing's entries under ``prefix`` (``Key``, ``ETag``, ``Size``...), page after page."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.cfg.bucket, Prefix=self.prefix + prefix):
                yield from page.get("Contents", [])
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, prefix or "/") from None

    def list(self, prefix: str = "") -> Iterator[str]:
        for obj in self._objects(prefix):
            yield obj["Key"][len(self.prefix):]

    def versions(self, prefix: str = "") -> dict[str, str]:
        return {obj["Key"][len(self.prefix):]: obj["ETag"].strip('"') for obj in self._objects(prefix)}

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.cfg.bucket, Key=self._key(key))
        except Exception as exc:  # noqa: BLE001 - translated to a readable StoreError
            raise self._error(exc, key) from None

    def describe(self) -> str:
        where = f"s3://{self.cfg.bucket}/{self.prefix}"
        return f"{where} at {self.cfg.endpoint_url}" if self.cfg.endpoint_url else where


S3_RETRIES = 5  # attempts per S3 call (botocore's standard mode: connection errors, 5xx, throttling)
_S3_CLIENTS: dict[tuple[str | None, ...], Any] = {}
_S3_CLIENTS_LOCK = threading.Lock()


def _s3_client(region: str | None, endpoint: str | None, access_key: str | None, secret: str | None) -> Any:
    """A boto3 S3 client for these settings, made once per process (making one costs 0.1-0.3 s
    of CPU, and every task a worker runs brings its own unpickled store); boto3 clients are
    thread-safe. Without ``access_key`` boto3's credential chain applies (environment,
    ``~/.aws``, an instance role). Calls are retried by botocore (:data:`S3_RETRIES`
    attempts, exponential back-off), so a server that restarts is waited out."""
    key = (region, endpoint, access_key, secret)
    with _S3_CLIENTS_LOCK:
        client = _S3_CLIENTS.get(key)
        if client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            kwargs: dict[str, Any] = {
                "region_name": region,
                "endpoint_url": endpoint,
                "config": BotoConfig(retries={"max_attempts": S3_RETRIES, "mode": "standard"}),
            }
            if access_key:
                kwargs["aws_access_key_id"] = access_key
                kwargs["aws_secret_access_key"] = secret
            client = _S3_CLIENTS[key] = boto3.session.Session().client("s3", **kwargs)
        return client


def atomic_write(dest: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write a local file whole or not at all: ``write(fileobj)`` fills a temp file beside
    ``dest`` (named for its writer, so a killed writer's leftover is known), which is then
    renamed to ``dest``. The file gets the mode a plain ``open()`` would give."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def open_store(cfg: Config) -> Store:
    """The store the configuration names: S3 when ``s3.bucket`` is set, else the local folder."""
    if cfg.s3.bucket:
        return S3Store(cfg.s3)
    return LocalStore(cfg.store.path)
