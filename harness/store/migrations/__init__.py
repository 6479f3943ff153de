"""Alembic migration environment of the results store (see env.py)."""
