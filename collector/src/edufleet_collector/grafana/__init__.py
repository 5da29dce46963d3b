"""Grafana: the macro expander the dashboard tests use, and the push command."""
