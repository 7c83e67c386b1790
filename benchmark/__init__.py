"""Membership-inference benchmark for diffusion models.

The harness owns data, splits, caching, metrics and reporting; attacks, defenses and targets are
plugins that it reaches only through :mod:`benchmark.api.registry`.
"""

__version__ = "0.1.0"
