"""The edufleet collector: ingest, tickets, dispatch, web pages and API."""

__version__ = "0.1.0"
