"""How TensorFlow uses the machine: threads per process and GPU memory.

Both must be set before TensorFlow runs its first operation in a process, so they are
called at the start of a fit, and first thing in every fold process.
"""

from __future__ import annotations

from training.builder import import_keras


def configure_tensorflow(*, threads: int | None = None) -> None:
    """Pin TensorFlow to ``threads`` intra- and inter-op threads (None: its default, one
    per core) and let it grow GPU memory as needed instead of taking all of it at start,
    so fold processes can share a GPU. Later calls in the same process change nothing."""
    import_keras()
    import tensorflow as tf

    try:
        if threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        # TensorFlow already started in this process (a second job in the same worker
        # child, or a test): its settings stay as they were, which is harmless.
        pass
