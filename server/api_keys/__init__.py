"""API keys: credentials of internal services, holding system roles."""
