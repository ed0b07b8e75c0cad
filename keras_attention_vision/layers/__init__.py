"""The public layers of keras-attention-vision, one per file."""

__all__ = []
