"""Merchants, API keys, stores, terminals and the guards that authenticate them."""
