"""Observability: metrics the gateway exports."""
