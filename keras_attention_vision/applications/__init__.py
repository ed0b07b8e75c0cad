"""Ready-made models of the papers, built the `keras.applications` way."""

__all__ = []
