"""The REST API's request and response models (pydantic): requests are frozen and refuse unknown keys."""
