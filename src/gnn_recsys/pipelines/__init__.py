"""Kedro pipelines: thin wiring around the core library, one folder per pipeline."""
