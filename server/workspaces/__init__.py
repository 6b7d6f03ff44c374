"""Workspaces: the client teams of the agency. The worked example of the module layering."""
