"""Database engines: the same functions in each module."""
