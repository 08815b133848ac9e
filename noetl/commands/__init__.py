"""Sub-commands of the noetl CLI, one module per area."""
