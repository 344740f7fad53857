"""The service: stream ingest, token memory, questions over MQTT and the web; it never imports lab or cli."""
