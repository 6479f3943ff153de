"""`harness serve`: the lab dashboard over a results store (read-only)."""
