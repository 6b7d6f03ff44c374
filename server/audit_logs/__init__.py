"""Audit log: an append-only record of every mutation, written in the mutation's transaction."""
