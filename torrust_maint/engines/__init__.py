"""Database engines: the same functions in each module (prepare, verify, restore)."""

from torrust_maint.engines import mysql, postgresql, sqlite

ENGINES = {"sqlite3": sqlite, "mysql": mysql, "postgresql": postgresql}
