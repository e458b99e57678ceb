"""`python -m storage.migrate`: apply the Alembic migrations to the configured database."""

from server.settings import Settings
from storage.db import migrate

if __name__ == "__main__":
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    print(f"migrated {settings.resolved_database_url.split('@')[-1]}")
