"""vidbox: a self-hosted video box for homes and small teams."""

__version__ = "0.1.0"
