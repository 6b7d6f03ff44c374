"""Pixels: Meta pixels (datasets) owned by workspaces, shared with their ad accounts."""
