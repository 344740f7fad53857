"""One module per `flexselect-agent` subcommand, each with `register(subparsers)`."""
