"""Whether a valid spec can train on a given dataset: one check for the API and the worker.

The API runs it on what the registry knows of a dataset (before a job exists); the worker
runs it again on the arrays it loaded (training.data.Table.info). Every refusal is a
`SpecDataMismatch` that names what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.vocabulary import DataKind, Task
from training.errors import SpecDataMismatch
from training.spec.layers import Embedding
from training.spec.model import ModelSpec
from training.spec.shapes import infer_shapes


@dataclass(frozen=True)
class DataInfo:
    """What is known of a dataset's shape and labels without its values.

    ``item_shape`` is one example's raw shape: ``(F,)`` for a table (target excluded),
    ``(H, W, C)`` for images, ``(steps, F)`` for a sequence already cut into windows.
    ``class_counts`` is None when the target is not a class label (float values).
    ``n_columns`` counts every column of a table, the target included (a window takes
    them all), and ``all_numeric`` says whether the target is numeric too.
    ``integer_features`` says whether every feature holds integers.
    """

    kind: DataKind
    n_rows: int
    item_shape: tuple[int, ...]
    class_counts: dict[str, int] | None = None
    n_columns: int = 0
    integer_features: bool = False
    all_numeric: bool = True

    @classmethod
    def of_dataset(
        cls,
        *,
        kind: str,
        n_rows: int,
        shape: list[int] | None,
        columns: list[dict[str, str]],
        target: str,
        class_counts: dict[str, int] | None,
    ) -> DataInfo:
        """From what the registry stores of a dataset (training.inspect.DataSummary)."""
        if kind == DataKind.IMAGE:
            return cls(DataKind.IMAGE, n_rows, tuple((shape or [])[1:]), class_counts=class_counts)
        features = [c for c in columns if c["name"] != target]
        target_dtype = next((c["dtype"] for c in columns if c["name"] == target), "object")
        return cls(
            DataKind.TABLE,
            n_rows,
            (len(features),),
            class_counts=class_counts,
            n_columns=len(columns),
            integer_features=all(c["dtype"].startswith(("int", "uint")) for c in features),
            all_numeric=target_dtype.startswith(("int", "uint", "float")),
        )


def input_shape(spec: ModelSpec, data: DataInfo) -> tuple[int, ...]:
    """The model's input shape for one example (batch axis excluded)."""
    if spec.window is not None and data.kind == DataKind.TABLE:
        return (spec.window.steps, data.n_columns)
    return data.item_shape


def check_against_data(spec: ModelSpec, data: DataInfo) -> None:
    """Refuse a spec that cannot train on this data: the layers against its shapes, the
    window against its length, the output layer, k and the splits against its classes."""
    _check_window(spec, data)
    if isinstance(spec.layers[0], Embedding) and (
        data.kind != DataKind.TABLE or not data.integer_features
    ):
        raise SpecDataMismatch(
            "layers.0: Embedding looks up integer codes, so every feature column must "
            "hold integers (0 .. input_dim-1); this dataset's features are not all integers"
        )
    infer_shapes(spec.layers, input_shape(spec, data))
    if spec.task != Task.REGRESSION:
        _check_classes(spec, data.class_counts)
    elif spec.window is None:
        _check_rows(spec, data)


def _check_window(spec: ModelSpec, data: DataInfo) -> None:
    window = spec.window
    if window is None:
        if data.kind == DataKind.SEQUENCE:
            raise SpecDataMismatch("the data is cut into sequences but the spec has no window")
        return
    if data.kind == DataKind.IMAGE:
        raise SpecDataMismatch("window is for time-series tables (CSV); this dataset holds images")
    if data.kind == DataKind.SEQUENCE:
        if data.item_shape[0] != window.steps:
            raise SpecDataMismatch(
                f"the data holds windows of {data.item_shape[0]} steps; the spec's window has "
                f"{window.steps}"
            )
        return
    if not data.all_numeric:
        raise SpecDataMismatch(
            "a window feeds every column, the target included, to the model at each "
            "step, so every column must be numeric; this dataset's target is not"
        )
    n_windows = data.n_rows - window.steps - window.horizon + 1
    if not _windows_fold(n_windows, spec):
        # The fold size is rounded down, so a count can fail between two that pass: from
        # the first of k+1 counts in a row that pass, every larger count passes.
        k = spec.k_folds
        needed = next(
            n
            for n in range(n_windows + 1, 10**7)
            if all(_windows_fold(n + i, spec) for i in range(k + 1))
        )
        raise SpecDataMismatch(
            f"a window of {window.steps} steps with horizon {window.horizon} "
            f"leaves {max(n_windows, 0)} windows in a series of {data.n_rows} rows; "
            f"k_folds={spec.k_folds} in time order, each fold's training windows "
            f"{window.gap} windows apart from the ones it is scored on"
            + (f", after test_split={spec.test_split:g}" if spec.test_split else "")
            + (f" and validation_split={spec.validation_split:g}" if spec.validation_split else "")
            + f", needs at least {needed} windows: use a shorter window or horizon, fewer "
            f"folds, a longer series, {NO_CROSS_VALIDATION}"
        )


def _windows_fold(n: int, spec: ModelSpec) -> bool:
    """Whether ``n`` windows leave every fit of ``spec`` at least one window to train on
    and to be scored on, split in time order as training.cv and training.fit split them:
    the held-out share last, `Window.gap` windows after the rest; forward-chaining folds
    (scikit-learn's TimeSeriesSplit with that gap)."""
    assert spec.window is not None
    gap = spec.window.gap

    def kept(n: int, share: float) -> int:
        return n if share == 0 else n - math.ceil(n * share) - gap

    n = kept(n, spec.test_split)
    if not spec.cross_validation:
        return kept(n, spec.validation_split) >= 1
    fold_size = n // (spec.k_folds + 1)
    first_training = n - gap - spec.k_folds * fold_size
    return fold_size >= 1 and kept(first_training, spec.validation_split) >= 1


def _check_classes(spec: ModelSpec, class_counts: dict[str, int] | None) -> None:
    task = spec.task.value
    if not class_counts:
        raise SpecDataMismatch(
            f"task {task!r} needs a target with class labels, but the target column "
            "holds continuous numbers; use task 'regression' or another target"
        )
    n_classes = len(class_counts)
    if spec.task == Task.BINARY and n_classes != 2:
        raise SpecDataMismatch(
            f"task 'binary' needs exactly 2 classes in the target; it has {n_classes}"
        )
    if spec.task == Task.MULTICLASS:
        if n_classes < 2:
            raise SpecDataMismatch(f"task 'multiclass' needs at least 2 classes; found {n_classes}")
        if spec.n_outputs != n_classes:
            raise SpecDataMismatch(
                f"the output layer has {spec.n_outputs} units but the target has {n_classes} "
                f"classes; expected Dense(units={n_classes}, activation='softmax')"
            )
    if isinstance(spec.class_weight, dict):
        unknown = sorted(set(spec.class_weight) - set(class_counts))
        missing = sorted(set(class_counts) - set(spec.class_weight))
        if unknown or missing:
            raise SpecDataMismatch(
                f"class_weight needs one weight per class label of the target, "
                f"{sorted(class_counts)}; unknown: {unknown}, missing: {missing}"
            )
    if spec.cross_validation:
        _check_folds(spec, class_counts)
    _check_splits(spec, class_counts)


# Where a refusal for data too small to fold points.
NO_CROSS_VALIDATION = (
    'or set "cross_validation": false to train on every row and score the model on those '
    "same rows (marked as training-row metrics in the version)"
)


def _check_folds(spec: ModelSpec, class_counts: dict[str, int]) -> None:
    smallest_label, smallest = min(class_counts.items(), key=lambda kv: kv[1])
    if spec.test_split > 0:
        # The k folds split what the test split leaves of the smallest class.
        smallest = math.floor(smallest * (1 - spec.test_split))
    if spec.k_folds > smallest:
        after = f" after test_split={spec.test_split:g}" if spec.test_split > 0 else ""
        fewer = f"lower k_folds to {smallest} or less, " if smallest >= 2 else ""
        raise SpecDataMismatch(
            f"k_folds={spec.k_folds} is larger than the smallest class ({smallest_label!r} "
            f"has {smallest} row{'' if smallest == 1 else 's'}{after}): stratified k-fold puts a row of every class in "
            f"each fold; {fewer}add rows, {NO_CROSS_VALIDATION}"
        )


def _check_rows(spec: ModelSpec, data: DataInfo) -> None:
    # Plain k-fold (regression) needs a row in each fold; stratified k-fold is checked
    # against the classes (_check_folds), windows against the series (_check_window).
    rows = math.floor(data.n_rows * (1 - spec.test_split))
    if spec.cross_validation and rows < spec.k_folds:
        raise SpecDataMismatch(
            f"k_folds={spec.k_folds} needs at least {spec.k_folds} rows to fold; the data has "
            f"{rows}"
            + (f" after test_split={spec.test_split:g}" if spec.test_split else "")
            + f": lower k_folds, add rows, {NO_CROSS_VALIDATION}"
        )


def _check_splits(spec: ModelSpec, class_counts: dict[str, int]) -> None:
    # scikit-learn's stratified train_test_split needs at least one row per class on
    # each side; refuse here what would otherwise fail in the worker.
    n_classes, total = len(class_counts), sum(class_counts.values())
    held_out = math.ceil(total * spec.test_split)
    if spec.test_split > 0 and held_out < n_classes:
        raise SpecDataMismatch(
            f"test_split={spec.test_split:g} holds out {held_out} of {total} rows, fewer than "
            f"the {n_classes} classes; raise test_split"
        )
    if spec.validation_split > 0:
        test = spec.test_split
        # A fold trains on (k-1)/k of the rows; without cross-validation, on all of them.
        share = (spec.k_folds - 1) / spec.k_folds if spec.cross_validation else 1.0
        fit_rows = math.floor(total * (1 - test) * share)
        in_fit = math.floor(min(class_counts.values()) * (1 - test) * share)
        if math.ceil(fit_rows * spec.validation_split) < n_classes or in_fit < 2:
            raise SpecDataMismatch(
                f"validation_split={spec.validation_split:g} cannot hold out a row of every "
                f"class from each fold's {fit_rows} training rows (the smallest class has "
                f"{in_fit} there); raise validation_split, lower k_folds, or use more rows"
            )
