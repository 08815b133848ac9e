"""The REST API (docs/api.md): one router module per resource over the control plane's services."""
