"""searches: a model search, its trials as jobs, and every job's fold assignment hash

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JOB_COLUMNS = (
    sa.Column("kind", sa.String(length=20), server_default="train", nullable=False),
    sa.Column("search_id", sa.String(length=32), nullable=True),
    sa.Column("trial", sa.Integer(), nullable=True),
    sa.Column("params", sa.JSON(), nullable=True),
    sa.Column("study_trial", sa.Integer(), nullable=True),
    sa.Column("outcome", sa.String(length=20), nullable=True),
    sa.Column("objective", sa.Float(), nullable=True),
    sa.Column("folds_sha256", sa.String(length=64), nullable=True),
)


def upgrade() -> None:
    op.create_table(
        "search",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("space", sa.JSON(), nullable=False),
        sa.Column("objective", sa.JSON(), nullable=False),
        sa.Column("budget", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("folds_sha256", sa.String(length=64), nullable=True),
        sa.Column("best_trial", sa.Integer(), nullable=True),
        sa.Column("refit_job_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["dataset.id"], name=op.f("fk_search_dataset_id_dataset")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search")),
    )
    op.create_index(op.f("ix_search_model_name"), "search", ["model_name"])
    op.create_index(op.f("ix_search_state"), "search", ["state"])
    op.create_index(op.f("ix_search_owner"), "search", ["owner"])
    with op.batch_alter_table("training_job") as batch:
        for column in JOB_COLUMNS:
            batch.add_column(column)
        batch.create_foreign_key(
            batch.f("fk_training_job_search_id_search"), "search", ["search_id"], ["id"]
        )
        batch.create_index(batch.f("ix_training_job_search_id"), ["search_id"])


def downgrade() -> None:
    with op.batch_alter_table("training_job") as batch:
        batch.drop_index(batch.f("ix_training_job_search_id"))
        batch.drop_constraint(batch.f("fk_training_job_search_id_search"), type_="foreignkey")
        for column in reversed(JOB_COLUMNS):
            batch.drop_column(column.name)
    op.drop_index(op.f("ix_search_owner"), table_name="search")
    op.drop_index(op.f("ix_search_state"), table_name="search")
    op.drop_index(op.f("ix_search_model_name"), table_name="search")
    op.drop_table("search")
