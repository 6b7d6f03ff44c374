"""Users and system roles."""
