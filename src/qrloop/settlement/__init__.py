"""Moving redemptions from the Redis streams into PostgreSQL, exactly once."""
