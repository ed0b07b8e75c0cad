"""The package version, kept in one place for pyproject.toml and `kav --version`."""

__version__ = "0.1.0"
