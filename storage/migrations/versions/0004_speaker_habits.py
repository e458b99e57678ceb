"""speaker habits: how a caller pauses, learned in calls, kept for their next call

Revision ID: 0004_speaker_habits
Revises: 0003_companion

- `user.speaker_habits`: JSON, `{"pauses_ms": [...], "went_on_ms": [...]}`
  (`pipeline.turn_end.SpeakerHabits`); `{}` for everyone until their next call.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_speaker_habits"
down_revision: str | None = "0003_companion"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("user", sa.Column("speaker_habits", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    # batch mode: SQLite rebuilds the table (the memory FTS triggers live on `memory`, untouched).
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("speaker_habits")
