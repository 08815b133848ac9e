"""The LLM settings, read only here at the entry points (DESIGN principle 10), like noetl/settings.py.

NOETL_LLM_BASE_URL  an OpenAI-compatible endpoint (e.g. http://127.0.0.1:11434/v1); unset: api.openai.com
NOETL_LLM_MODEL     the model name (default gpt-4o-mini when only the base URL is set)
OPENAI_API_KEY      the key, if the endpoint wants one
NOETL_LLM_TIMEOUT_S how long one answer may take (default 60)

An LLM is used only when NOETL_LLM_BASE_URL or NOETL_LLM_MODEL is set: an OPENAI_API_KEY that happens to
be in the environment never sends a diagnosis anywhere by itself.
"""

from __future__ import annotations

import os

from agents.diagnosis.llm import LlmSettings

DEFAULT_MODEL = "gpt-4o-mini"


def llm_settings() -> LlmSettings | None:
    base_url = os.environ.get("NOETL_LLM_BASE_URL", "").strip() or None
    model = os.environ.get("NOETL_LLM_MODEL", "").strip() or None
    if base_url is None and model is None:
        return None
    try:
        timeout = float(os.environ.get("NOETL_LLM_TIMEOUT_S", "") or 60.0)
    except ValueError:
        timeout = 60.0
    return LlmSettings(model=model or DEFAULT_MODEL, base_url=base_url,
                       api_key=os.environ.get("OPENAI_API_KEY", "").strip() or None, timeout_s=timeout)
