"""DGSR served as an MLflow pyfunc model."""
