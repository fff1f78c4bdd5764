"""torrust-maint: maintenance windows and backups for Torrust Tracker deployments."""

__version__ = "0.1.0"
