"""What became of codes: settled redemptions (one, a page, all as CSV) and code lookups."""
