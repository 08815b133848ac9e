"""NoETL as MCP tools, resources and prompts for LLM assistants."""
