"""Weights from the Hugging Face Hub, pinned to a revision.

huggingface_hub does the transfer: resumable downloads (its `.incomplete` files survive in the
staging directory between attempts), progress bars, authentication from HF_TOKEN, and HF_ENDPOINT
for a private mirror.
"""

from __future__ import annotations

from pathlib import Path

from sovra.errors import StoreError
from sovra.storage.refs import HfRef, WeightRef

__all__ = ["HubSource"]


class HubSource:
    def fetch(self, ref: WeightRef, staging: Path) -> None:
        assert isinstance(ref, HfRef)
        # Imported here: huggingface_hub is slow to import and most commands never need it.
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            if ref.file:
                hf_hub_download(ref.repo, ref.file, revision=ref.revision, local_dir=staging)
            else:
                snapshot_download(ref.repo, revision=ref.revision, local_dir=staging)
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
            raise StoreError(f"{ref.uri}: {exc}") from exc
