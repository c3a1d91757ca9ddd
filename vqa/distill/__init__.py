"""Rule distillation: an LLM extends an incomplete ASP theory, checked and mended against the solver."""
