"""api keys, job owners, idempotency records, and version numbers that are never reused

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_key_token_sha256")),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("operation", sa.String(length=100), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "key", "operation", name=op.f("pk_idempotency_record")),
    )
    with op.batch_alter_table("training_job") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.create_index(batch.f("ix_training_job_owner"), ["owner"])
    with op.batch_alter_table("registered_model") as batch:
        batch.add_column(
            sa.Column("last_version", sa.Integer(), nullable=False, server_default="0")
        )
    # The highest number each model has given so far; deletes never lower it.
    op.execute(
        "UPDATE registered_model SET last_version = COALESCE((SELECT MAX(version) "
        "FROM model_version WHERE model_version.registered_model_id = registered_model.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("registered_model") as batch:
        batch.drop_column("last_version")
    with op.batch_alter_table("training_job") as batch:
        batch.drop_index(batch.f("ix_training_job_owner"))
        batch.drop_column("owner")
    op.drop_table("idempotency_record")
    op.drop_table("api_key")
