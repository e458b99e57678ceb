"""`python -m server.migrate` (run by `make migrate`) migrates the configured database."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import ROOT


def test_migrate_command_applies_the_migrations(tmp_path: Path, db_url: str) -> None:
    """With SILVERTALK_DATABASE_URL set, the command creates the schema there and says where."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERTALK_")}
    env |= {
        "SILVERTALK_DATABASE_URL": db_url,
        "SILVERTALK_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "server.migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("migrated ")
    sync_url = db_url.replace("+aiosqlite", "")  # the same database through a sync driver
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            assert "event" in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_storage_never_imports_the_server() -> None:
    """No module under storage/ imports server (the settings are passed down, never fetched up)."""
    offenders = []
    for path in (ROOT / "storage").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "server"]
    assert offenders == []
