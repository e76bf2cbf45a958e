"""Running the service: the runtime that owns all state, the CLI, health checks, metrics, logs."""
