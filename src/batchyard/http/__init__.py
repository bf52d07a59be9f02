"""The HTTP face of a yard: JSON API (and, later, the dashboard)."""

from batchyard.http.app import create_app

__all__ = ["create_app"]
