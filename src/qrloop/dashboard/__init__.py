"""The merchant dashboard: pages for people, signed in with a password."""
