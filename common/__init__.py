"""Small helpers shared by streams and agent that know neither: reconnect back-off, secret masking."""
