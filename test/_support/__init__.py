"""Helpers shared by the test modules (not tests; test modules never import each other)."""
