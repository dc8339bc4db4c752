import numpy as np
import pytest

from training.data import load_table
from training.errors import DataError


def test_loads_features_and_integer_labels() -> None:
    csv = b"a,b,label\n1,2.5,1\n3,4.5,0\n5,6.5,1\n"

    table = load_table(csv, target="label", task="binary")

    assert table.X.dtype == np.float32
    assert table.X.tolist() == [[1.0, 2.5], [3.0, 4.5], [5.0, 6.5]]
    assert table.y.dtype == np.int64
    assert table.y.tolist() == [1, 0, 1]
    assert table.feature_names == ["a", "b"]
    assert table.class_labels == [0, 1]
    assert all(type(v) is int for v in table.class_labels)
    assert table.target == "label"


def test_target_column_need_not_be_last() -> None:
    table = load_table(b"y,a,b\n7,1,2\n8,3,4\n9,5,6\n", target="y", task="multiclass")

    assert table.feature_names == ["a", "b"]
    assert table.class_labels == [7, 8, 9]
    assert table.y.tolist() == [0, 1, 2]


def test_string_labels_are_sorted_and_encoded() -> None:
    csv = b"x,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n"

    table = load_table(csv, target="species", task="multiclass")

    assert table.class_labels == ["setosa", "versicolor", "virginica"]
    assert table.y.tolist() == [2, 0, 1, 0]


def test_float_written_integer_labels_are_ints() -> None:
    table = load_table(b"x,t\n1,0.0\n2,1.0\n", target="t", task="binary")

    assert table.class_labels == [0, 1]
    assert table.y.tolist() == [0, 1]


def test_regression_target_is_float32_without_labels() -> None:
    table = load_table(b"x,t\n1,0.5\n2,1.25\n3,-2\n", target="t", task="regression")

    assert table.y.dtype == np.float32
    assert table.y.tolist() == [0.5, 1.25, -2.0]
    assert table.class_labels is None


@pytest.mark.parametrize(
    ("csv", "target", "task", "expected"),
    [
        (b"a,b\n1,2\n3,4\n", "label", "binary", "'label' is not in the dataset"),
        (b"a,colour,label\n1,red,0\n2,blue,1\n", "label", "binary", "['colour'] are not numeric"),
        (b"a,b,label\n1,,0\n2,3,1\n", "label", "binary", "['b'] have missing values"),
        (b"a,label\n1,0\n2,\n", "label", "binary", "['label'] have missing values"),
        (b"a,label\n1,x\n2,y\n", "label", "regression", "needs a numeric target"),
        (b"a,label\n1,0\n2,0\n", "label", "binary", "only one class"),
        (b"", "label", "binary", "empty"),
        (b"a,label\n", "label", "binary", "no rows"),
        (b"label\n1\n0\n", "label", "binary", "no feature columns"),
        (b"a,label\n1,0\n2,1\n", "label", "ranking", "unknown task"),
    ],
)
def test_bad_data_raises_data_error(csv: bytes, target: str, task: str, expected: str) -> None:
    with pytest.raises(DataError) as info:
        load_table(csv, target=target, task=task)

    assert expected in str(info.value)
    assert info.value.code == "data_invalid"
