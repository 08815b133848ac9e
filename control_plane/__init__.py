"""The control plane: Postgres store, services and the REST API over the engine."""
