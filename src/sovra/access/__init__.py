"""The gateway: one OpenAI-compatible endpoint in front of every replica pool."""

from sovra.access.app import create_app

__all__ = ["create_app"]
