"""Acceptance agreements: an issuer proposes, the acceptor consents, either side ends them."""
