"""Defenses applied while training a target; one registered class per file."""
