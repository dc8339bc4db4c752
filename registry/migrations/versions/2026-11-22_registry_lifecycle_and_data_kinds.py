"""registry lifecycle and data kinds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:39:43.199862
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "alias_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registered_model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registered_model_id"],
            ["registered_model.id"],
            name=op.f("fk_alias_event_registered_model_id_registered_model"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_event")),
    )
    with op.batch_alter_table("alias_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alias_event_registered_model_id"), ["registered_model_id"], unique=False
        )

    op.create_table(
        "model_tag",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registered_model_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registered_model_id"],
            ["registered_model.id"],
            name=op.f("fk_model_tag_registered_model_id_registered_model"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_tag")),
        sa.UniqueConstraint(
            "registered_model_id", "key", name=op.f("uq_model_tag_registered_model_id_key")
        ),
    )
    with op.batch_alter_table("model_tag", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_tag_registered_model_id"), ["registered_model_id"], unique=False
        )

    op.create_table(
        "alias",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registered_model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_alias_model_version_id_model_version"),
        ),
        sa.ForeignKeyConstraint(
            ["registered_model_id"],
            ["registered_model.id"],
            name=op.f("fk_alias_registered_model_id_registered_model"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias")),
        sa.UniqueConstraint(
            "registered_model_id", "name", name=op.f("uq_alias_registered_model_id_name")
        ),
    )
    op.create_table(
        "version_tag",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_version_tag_model_version_id_model_version"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_version_tag")),
        sa.UniqueConstraint(
            "model_version_id", "key", name=op.f("uq_version_tag_model_version_id_key")
        ),
    )
    with op.batch_alter_table("version_tag", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_version_tag_model_version_id"), ["model_version_id"], unique=False
        )

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), server_default="table", nullable=False)
        )
        batch_op.add_column(sa.Column("shape", sa.JSON(), nullable=True))
    # Every dataset of the first release was a table: rows × feature columns.
    dataset = sa.table(
        "dataset",
        sa.column("id", sa.String),
        sa.column("n_rows", sa.Integer),
        sa.column("n_columns", sa.Integer),
        sa.column("shape", sa.JSON),
    )
    conn = op.get_bind()
    for row in conn.execute(sa.select(dataset.c.id, dataset.c.n_rows, dataset.c.n_columns)):
        conn.execute(
            dataset.update()
            .where(dataset.c.id == row.id)
            .values(shape=[row.n_rows, row.n_columns - 1])
        )

    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test_metrics", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("retrained_from_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_model_version_retrained_from_id_model_version"),
            "model_version",
            ["retrained_from_id"],
            ["id"],
        )

    with op.batch_alter_table("registered_model", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))

    with op.batch_alter_table("training_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retrained_from_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_training_job_retrained_from_id_model_version"),
            "model_version",
            ["retrained_from_id"],
            ["id"],
        )


def downgrade() -> None:

    with op.batch_alter_table("training_job", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_training_job_retrained_from_id_model_version"), type_="foreignkey"
        )
        batch_op.drop_column("retrained_from_id")

    with op.batch_alter_table("registered_model", schema=None) as batch_op:
        batch_op.drop_column("description")

    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_model_version_retrained_from_id_model_version"), type_="foreignkey"
        )
        batch_op.drop_column("archived_at")
        batch_op.drop_column("retrained_from_id")
        batch_op.drop_column("description")
        batch_op.drop_column("test_metrics")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("shape")
        batch_op.drop_column("kind")

    with op.batch_alter_table("version_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_version_tag_model_version_id"))

    op.drop_table("version_tag")
    op.drop_table("alias")
    with op.batch_alter_table("model_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_tag_registered_model_id"))

    op.drop_table("model_tag")
    with op.batch_alter_table("alias_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alias_event_registered_model_id"))

    op.drop_table("alias_event")
