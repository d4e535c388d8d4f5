"""Thin adapters for HTTP clients and web frameworks; one module per framework."""
