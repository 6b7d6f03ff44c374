"""Authentication and authorization: principals, tokens, passwords, the access-policy table."""
