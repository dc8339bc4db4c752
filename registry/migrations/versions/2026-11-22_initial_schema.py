"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 22:20:57.579886
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "dataset",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_columns", sa.Integer(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("class_counts", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset")),
        sa.UniqueConstraint("sha256", "target", name=op.f("uq_dataset_sha256_target")),
    )
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_sha256"), ["sha256"], unique=False)

    op.create_table(
        "registered_model",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registered_model")),
        sa.UniqueConstraint("name", name=op.f("uq_registered_model_name")),
    )
    op.create_table(
        "training_job",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["dataset.id"], name=op.f("fk_training_job_dataset_id_dataset")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_job")),
    )
    with op.batch_alter_table("training_job", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_training_job_model_name"), ["model_name"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_training_job_state"), ["state"], unique=False)

    op.create_table(
        "fold_metric",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("fold", sa.Integer(), nullable=False),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_val", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["training_job.id"],
            name=op.f("fk_fold_metric_job_id_training_job"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fold_metric")),
        sa.UniqueConstraint("job_id", "fold", name=op.f("uq_fold_metric_job_id_fold")),
    )
    op.create_table(
        "job_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["training_job.id"],
            name=op.f("fk_job_event_job_id_training_job"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_event")),
    )
    with op.batch_alter_table("job_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_event_job_id"), ["job_id"], unique=False)

    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registered_model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("parity", sa.JSON(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("onnx_sha256", sa.String(length=64), nullable=False),
        sa.Column("onnx_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("keras_sha256", sa.String(length=64), nullable=False),
        sa.Column("library_versions", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["dataset.id"], name=op.f("fk_model_version_dataset_id_dataset")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["training_job.id"], name=op.f("fk_model_version_job_id_training_job")
        ),
        sa.ForeignKeyConstraint(
            ["registered_model_id"],
            ["registered_model.id"],
            name=op.f("fk_model_version_registered_model_id_registered_model"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_version")),
        sa.UniqueConstraint("job_id", name=op.f("uq_model_version_job_id")),
        sa.UniqueConstraint(
            "registered_model_id",
            "version",
            name=op.f("uq_model_version_registered_model_id_version"),
        ),
    )


def downgrade() -> None:

    op.drop_table("model_version")
    with op.batch_alter_table("job_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_event_job_id"))

    op.drop_table("job_event")
    op.drop_table("fold_metric")
    with op.batch_alter_table("training_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_job_state"))
        batch_op.drop_index(batch_op.f("ix_training_job_model_name"))

    op.drop_table("training_job")
    op.drop_table("registered_model")
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_sha256"))

    op.drop_table("dataset")
