"""Templates and static files for the pages people look at."""
