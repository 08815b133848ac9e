"""The playbook language: safe YAML with source marks, the canonical model, short forms, templates."""
