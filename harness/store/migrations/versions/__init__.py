"""The store's schema revisions, oldest first (0001 is the store of harness 0.1.0)."""
