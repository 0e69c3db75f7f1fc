"""shopgym's public Python API (the thin top-level package): register your own policy kinds."""

from policies.plugins import register_policy

__all__ = ["register_policy"]
