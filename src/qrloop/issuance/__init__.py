"""Campaigns, orders (serial ranges), code exports, voids and campaign stats."""
