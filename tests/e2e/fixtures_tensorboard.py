"""Fixtures: tensorboard (filled in by the e2e work)."""
