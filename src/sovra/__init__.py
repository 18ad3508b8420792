"""Sovra: a self-hosted platform for open-weight LLMs."""

__version__ = "0.1.0"
