"""held-out predictions: each version's outputs on its test rows (an artifact), by sha256

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: only versions whose spec held test rows out have them.
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("predictions_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("predictions_sha256")
