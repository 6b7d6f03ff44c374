"""Requests: everything a workspace asks for that staff approve, and their one lifecycle."""
