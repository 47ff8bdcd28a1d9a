"""The harness: supervisor, control channel, chaos, verify and the CLI."""
