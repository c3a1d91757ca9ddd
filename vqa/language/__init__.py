"""Question parsers: natural language -> Program."""
