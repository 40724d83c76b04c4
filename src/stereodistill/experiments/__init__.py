"""Experiments built from the pieces below them: the quickstart (teacher → students → report)."""
