"""`python -m server.migrate`: apply the Alembic migrations to the database the settings name.

The command lives with the settings (storage never reads them): `storage.db.migrate(url)` does the
work for the URL it is given.
"""

from server.settings import Settings
from storage.db import migrate


def main() -> None:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    print(f"migrated {settings.resolved_database_url.split('@')[-1]}")


if __name__ == "__main__":
    main()
