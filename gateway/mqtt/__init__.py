"""MQTT ingestion of device vitals (docs/mqtt.md)."""
