"""The `flexselect-agent` command line: the composition root over the service (`agent`) and the lab."""
