"""Accounts: passwords, sessions and tokens, first-admin setup, invites, rate limits."""
