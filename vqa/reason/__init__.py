"""Reasoners: ASP (clingo) and the Neural State Machine."""
