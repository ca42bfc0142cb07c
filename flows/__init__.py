"""Prefect flows, one file per pipeline stage, plus the `imgclf` command line."""
