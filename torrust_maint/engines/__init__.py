"""Database engines: the same functions in each module (prepare, verify, restore)."""

from torrust_maint.engines import mysql, sqlite

ENGINES = {"sqlite3": sqlite, "mysql": mysql}
