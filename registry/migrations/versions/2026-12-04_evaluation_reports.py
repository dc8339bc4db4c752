"""evaluation reports: each version's report (an artifact) by its sha256

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: versions registered before reports have none until `kiln versions report`
    # asks a worker for one.
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("report_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("report_sha256")
