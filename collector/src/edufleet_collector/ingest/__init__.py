"""Ingest: the MQTT consumer that stores telemetry, device state and events."""
