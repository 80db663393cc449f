"""Guardian: a runtime supervisor for LLM agents."""
