"""The edufleet wire contract: MQTT topics and payload models of agent and collector."""
