"""orphan artifacts: files a deleted version left, removed later by the sweeper

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orphan_artifact",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("orphaned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_orphan_artifact")),
    )


def downgrade() -> None:
    op.drop_table("orphan_artifact")
