"""The till's hot path: verify a scanned code and consume it atomically in Redis."""
