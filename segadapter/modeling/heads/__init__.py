"""Decode heads (one file per head)."""
