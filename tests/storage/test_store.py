"""The store's own guarantees, with an in-memory fake source (and processes for the lock)."""

import multiprocessing
import time
from pathlib import Path

import pytest

from sovra.errors import StoreError
from sovra.storage.refs import FileRef, PypiRef, WeightRef, parse_ref
from sovra.storage.store import MANIFEST, WeightStore

REF = parse_ref("hf://org/model@rev1/model.gguf")


class CountingSource:
    """Writes a fixed file and counts its fetches in a file (so it counts across processes)."""

    def __init__(self, counter: Path, delay: float = 0.0, fail: bool = False) -> None:
        self.counter, self.delay, self.fail = counter, delay, fail

    def fetch(self, ref: WeightRef, staging: Path) -> None:
        with self.counter.open("a") as handle:
            handle.write("x")
        (staging / ref.filename).write_bytes(b"half")
        time.sleep(self.delay)
        if self.fail:
            raise StoreError("connection reset")
        (staging / ref.filename).write_bytes(b"weights")


def fetches(counter: Path) -> int:
    return len(counter.read_text()) if counter.exists() else 0


def test_a_second_ensure_fetches_nothing(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    store = WeightStore(tmp_path / "store", {"hf": CountingSource(counter)})
    first = store.ensure(REF)
    second = WeightStore(tmp_path / "store", {"hf": CountingSource(counter)}).ensure(REF)
    assert first == second == tmp_path / "store" / REF.store_key / "model.gguf"
    assert first.read_bytes() == b"weights"
    assert fetches(counter) == 1
    assert (first.parent / MANIFEST).is_file()


def test_an_interrupted_fetch_is_never_used(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    store = WeightStore(tmp_path / "store", {"hf": CountingSource(counter, fail=True)})
    with pytest.raises(StoreError, match="connection reset"):
        store.ensure(REF)
    assert not store.is_present(REF)
    assert not (tmp_path / "store" / REF.store_key).exists()  # only .partial holds the half file
    healthy = WeightStore(tmp_path / "store", {"hf": CountingSource(counter)})
    assert healthy.ensure(REF).read_bytes() == b"weights"
    assert fetches(counter) == 2


def test_a_directory_without_manifest_is_not_trusted(tmp_path: Path) -> None:
    leftover = tmp_path / "store" / REF.store_key
    leftover.mkdir(parents=True)
    (leftover / "model.gguf").write_bytes(b"truncated")
    store = WeightStore(tmp_path / "store", {"hf": CountingSource(tmp_path / "count")})
    assert store.ensure(REF).read_bytes() == b"weights"


def _ensure_in_process(root: str, counter: str) -> None:
    WeightStore(Path(root), {"hf": CountingSource(Path(counter), delay=0.5)}).ensure(REF)


def test_concurrent_preloads_fetch_once(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_ensure_in_process, args=(str(tmp_path / "store"), str(counter)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert fetches(counter) == 1
    assert (tmp_path / "store" / REF.store_key / "model.gguf").read_bytes() == b"weights"


def test_file_refs_are_used_in_place_and_must_exist(tmp_path: Path) -> None:
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"w")
    store = WeightStore(tmp_path / "store", {})
    assert store.ensure(FileRef(weights)) == weights
    with pytest.raises(StoreError, match="no such file"):
        store.ensure(FileRef(tmp_path / "missing.gguf"))


def test_a_scheme_without_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no source configured for pypi"):
        WeightStore(tmp_path, {}).ensure(PypiRef("p", "1", "a/b.gguf"))
