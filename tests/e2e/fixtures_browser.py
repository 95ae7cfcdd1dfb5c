"""Fixtures: browser (filled in by the e2e work)."""
