"""Official OTTO score and next-click ranking metrics, every model side by side."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
