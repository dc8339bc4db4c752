"""reference profiles: each version's profile of its training rows (an artifact), by sha256

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: versions registered before profiles get one from a report job.
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("profile_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("profile_sha256")
