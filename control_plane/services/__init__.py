"""The control plane's services: what the API and the CLI do, over the store and the bus."""
