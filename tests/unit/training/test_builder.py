import numpy as np
import pytest

from training.builder import build_model, import_keras, standardiser_stats
from training.spec import ModelSpec

keras = import_keras()


def _spec(**overrides: object) -> ModelSpec:
    fields: dict[str, object] = {
        "task": "binary",
        "layers": [
            {"type": "Dense", "units": 8, "activation": "relu"},
            {"type": "Dropout", "rate": 0.25},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
        "loss": "binary_crossentropy",
    }
    fields.update(overrides)
    return ModelSpec.model_validate(fields)


def _build(spec: ModelSpec, n_features: int = 3) -> keras.Model:
    return build_model(
        spec, n_features=n_features, mean=np.zeros(n_features), std=np.ones(n_features)
    )


def test_layers_follow_the_spec_after_the_standardiser() -> None:
    model = _build(_spec())

    standardise, hidden, dropout, out = model.layers
    assert isinstance(standardise, keras.layers.Rescaling)
    assert isinstance(hidden, keras.layers.Dense)
    assert (hidden.units, hidden.activation.__name__) == (8, "relu")
    assert isinstance(dropout, keras.layers.Dropout)
    assert dropout.rate == pytest.approx(0.25)
    assert isinstance(out, keras.layers.Dense)
    assert (out.units, out.activation.__name__) == (1, "sigmoid")
    assert model.inputs[0].name == "features"
    assert tuple(model.inputs[0].shape) == (None, 3)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sgd", "SGD"),
        ("rmsprop", "RMSprop"),
        ("adagrad", "Adagrad"),
        ("adam", "Adam"),
        ("nadam", "Nadam"),
        ("adamw", "AdamW"),
    ],
)
def test_optimizer_and_learning_rate(name: str, cls: str) -> None:
    model = _build(_spec(optimizer={"name": name, "learning_rate": 0.05}))

    assert type(model.optimizer).__name__ == cls
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("task", "loss", "units", "activation", "cls"),
    [
        ("binary", "binary_crossentropy", 1, "sigmoid", "BinaryCrossentropy"),
        ("multiclass", "categorical_crossentropy", 3, "softmax", "CategoricalCrossentropy"),
        (
            "multiclass",
            "sparse_categorical_crossentropy",
            3,
            "softmax",
            "SparseCategoricalCrossentropy",
        ),
        ("regression", "mse", 1, "linear", "MeanSquaredError"),
        ("regression", "mae", 1, "linear", "MeanAbsoluteError"),
        ("regression", "huber", 1, "linear", "Huber"),
    ],
)
def test_loss_mapping(task: str, loss: str, units: int, activation: str, cls: str) -> None:
    spec = _spec(
        task=task, loss=loss, layers=[{"type": "Dense", "units": units, "activation": activation}]
    )

    assert type(_build(spec).loss).__name__ == cls


def test_standardiser_centres_and_scales_the_training_rows() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [rng.normal(50.0, 7.0, 200), rng.normal(-3.0, 0.01, 200), np.full(200, 4.0)]
    ).astype(np.float32)
    mean, std = standardiser_stats(X)
    model = build_model(_spec(), n_features=3, mean=mean, std=std)

    scaled = np.asarray(model.layers[0](X))

    np.testing.assert_allclose(scaled.mean(axis=0), [0.0, 0.0, 0.0], atol=1e-3)
    # The constant column has std 0; it is divided by 1, so it stays at 0, not NaN.
    np.testing.assert_allclose(scaled.std(axis=0), [1.0, 1.0, 0.0], atol=1e-3)


def test_mean_and_std_must_match_the_feature_count() -> None:
    with pytest.raises(ValueError, match="3 values each"):
        build_model(_spec(), n_features=3, mean=np.zeros(2), std=np.ones(2))
