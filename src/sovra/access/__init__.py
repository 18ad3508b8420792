"""The gateway: one OpenAI- and Anthropic-compatible endpoint in front of every replica pool.

Nothing is imported here: importing `sovra.access.keys` must not load the whole gateway.
"""
