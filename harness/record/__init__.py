"""The result record: one row per device x candidate x runtime target."""
