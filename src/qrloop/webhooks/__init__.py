"""Telling merchants what happened: signed event deliveries to their endpoints, with retries."""
