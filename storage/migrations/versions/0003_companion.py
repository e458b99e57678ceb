"""companion: alerts, and full-text search over memories

Revision ID: 0003_companion
Revises: 0002_jobs_chat

- `alert`: words of emergency heard in a call and the caregiver webhook's delivery state.
- Memory search ranked by relevance. PostgreSQL: a GIN index over a weighted `simple` tsvector
  (title and people weigh most, then place, then body); `server.companion.search.PG_VECTOR` must
  stay the same expression, or the index is not used. SQLite: an FTS5 table `memory_fts` (unicode61
  tokens, matched by prefix so Korean particles do not hide a name: "영희" finds "영희랑") kept in
  step by triggers, keyed by the memory's id. A later migration that rebuilds `memory` with
  batch mode on SQLite drops these triggers and must create them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0003_companion"
down_revision: str | None = "0002_jobs_chat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_VECTOR = (
    "setweight(to_tsvector('simple', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce((people::jsonb)::text, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce(place, '')), 'B') || "
    "setweight(to_tsvector('simple', coalesce(body, '')), 'C')"
)
_SQLITE_ROW = (
    "NEW.id, NEW.user_id, NEW.title, NEW.body, coalesce(NEW.place, ''), "
    "(SELECT coalesce(group_concat(value, ' '), '') FROM json_each(NEW.people))"
)
_SQLITE_COLUMNS = "memory_id, user_id, title, body, place, people"


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("delivery", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("delivered_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_created_at"), ["created_at"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_memory_search ON memory USING gin (({PG_VECTOR}))")
        return
    op.execute(
        f"CREATE VIRTUAL TABLE memory_fts USING fts5(memory_id UNINDEXED, user_id UNINDEXED, "
        f"title, body, place, people, tokenize = 'unicode61 remove_diacritics 2')"
    )
    op.execute(
        f"CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory BEGIN "
        f"INSERT INTO memory_fts ({_SQLITE_COLUMNS}) VALUES ({_SQLITE_ROW}); END"
    )
    op.execute(
        f"CREATE TRIGGER memory_fts_update AFTER UPDATE ON memory BEGIN "
        f"DELETE FROM memory_fts WHERE memory_id = OLD.id; "
        f"INSERT INTO memory_fts ({_SQLITE_COLUMNS}) VALUES ({_SQLITE_ROW}); END"
    )
    op.execute(
        "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory BEGIN "
        "DELETE FROM memory_fts WHERE memory_id = OLD.id; END"
    )
    op.execute(
        f"INSERT INTO memory_fts ({_SQLITE_COLUMNS}) SELECT id, user_id, title, body, coalesce(place, ''), "
        f"(SELECT coalesce(group_concat(value, ' '), '') FROM json_each(memory.people)) FROM memory"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_memory_search")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS memory_fts_{name}")
        op.execute("DROP TABLE IF EXISTS memory_fts")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_created_at"))
        batch_op.drop_index(batch_op.f("ix_alert_user_id"))
    op.drop_table("alert")
