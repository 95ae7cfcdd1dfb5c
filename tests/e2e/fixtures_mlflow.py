"""Fixtures: mlflow (filled in by the e2e work)."""
