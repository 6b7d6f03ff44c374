"""Ad accounts: Meta ad accounts owned by workspaces."""
