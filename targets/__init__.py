"""Model families the harness can train or load; one registered class per file."""
