"""training/builder.py: the Keras model a spec describes: its layers after the
standardiser, every optimizer parameter, schedule, regulariser and initialiser of the
spec as the Keras object the spec names, gelu, and the loss for each task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.factories import cnn, lstm, mlp, model_spec
from training.builder import build_model, import_keras, standardiser_stats
from training.spec import ModelSpec
from training.spec.shapes import count_parameters

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


def _model(layers: list[dict[str, Any]], shape: tuple[int, ...] = (3,), **extra: Any) -> Any:
    spec = ModelSpec.model_validate(
        {"task": "regression", "loss": "mse", "layers": [*layers, {"type": "Dense", "units": 1}]}
        | extra
    )
    n = shape[-1]
    return build_model(spec, input_shape=shape, mean=np.zeros(n), std=np.ones(n))


@pytest.mark.parametrize(
    ("optimizer", "cls", "attrs"),
    [
        (
            {"name": "sgd", "momentum": 0.8, "nesterov": True},
            "SGD",
            {"momentum": 0.8, "nesterov": True},
        ),
        (
            {"name": "rmsprop", "rho": 0.7, "momentum": 0.1},
            "RMSprop",
            {"rho": 0.7, "momentum": 0.1},
        ),
        (
            {"name": "adagrad", "initial_accumulator_value": 0.3},
            "Adagrad",
            {"initial_accumulator_value": 0.3},
        ),
        ({"name": "adadelta", "rho": 0.5}, "Adadelta", {"rho": 0.5}),
        (
            {"name": "adam", "beta_1": 0.8, "beta_2": 0.95, "amsgrad": True},
            "Adam",
            {"beta_1": 0.8, "beta_2": 0.95, "amsgrad": True},
        ),
        ({"name": "adamax", "epsilon": 1e-5}, "Adamax", {"epsilon": 1e-5}),
        ({"name": "nadam", "beta_1": 0.7}, "Nadam", {"beta_1": 0.7}),
        ({"name": "adamw", "weight_decay": 0.05}, "AdamW", {"weight_decay": 0.05}),
    ],
)
def test_optimizer_parameters_reach_keras(
    optimizer: dict[str, Any], cls: str, attrs: dict[str, Any]
) -> None:
    model = _model([], optimizer=optimizer)
    assert type(model.optimizer).__name__ == cls
    for name, value in attrs.items():
        got = getattr(model.optimizer, name)
        assert (bool(got) if isinstance(value, bool) else float(got)) == pytest.approx(value), name


def test_learning_rate_schedules() -> None:
    exp = _model(
        [],
        optimizer={
            "name": "sgd",
            "learning_rate": {
                "schedule": "exponential_decay",
                "initial_learning_rate": 0.1,
                "decay_steps": 10,
                "decay_rate": 0.5,
                "staircase": True,
            },
        },
    ).optimizer._learning_rate
    assert isinstance(exp, keras.optimizers.schedules.ExponentialDecay)
    assert float(exp(19)) == pytest.approx(0.05)  # staircase: floor(19 / 10) = 1 halving
    cos = _model(
        [],
        optimizer={
            "name": "adam",
            "learning_rate": {
                "schedule": "cosine_decay",
                "initial_learning_rate": 0.1,
                "decay_steps": 100,
                "alpha": 0.1,
            },
        },
    ).optimizer._learning_rate
    assert isinstance(cos, keras.optimizers.schedules.CosineDecay)
    assert float(cos(100)) == pytest.approx(0.01)


def test_regularisers_and_initialisers() -> None:
    model = _model(
        [
            {
                "type": "Dense",
                "units": 2,
                "kernel_regularizer": {"l1": 0.1},
                "bias_regularizer": {"l2": 0.2},
                "kernel_initializer": "zeros",
                "bias_initializer": "ones",
            },
            {"type": "Dense", "units": 2, "kernel_regularizer": {"l1": 0.3, "l2": 0.4}},
        ]
    )
    first, second = model.layers[1], model.layers[2]
    assert isinstance(first.kernel_regularizer, keras.regularizers.L1)
    assert float(first.kernel_regularizer.l1) == pytest.approx(0.1)
    assert isinstance(first.bias_regularizer, keras.regularizers.L2)
    assert isinstance(second.kernel_regularizer, keras.regularizers.L1L2)
    assert float(second.kernel_regularizer.l1) == pytest.approx(0.3)
    assert float(second.kernel_regularizer.l2) == pytest.approx(0.4)
    assert np.all(first.kernel.numpy() == 0)
    assert np.all(first.bias.numpy() == 1)


def test_gelu_is_the_exact_gelu() -> None:
    model = _model(
        [{"type": "Dense", "units": 1, "activation": "gelu", "kernel_initializer": "ones"}],
        shape=(1,),
    )
    x = np.linspace(-4, 4, 41, dtype=np.float32).reshape(-1, 1)
    hidden = keras.Model(model.inputs, model.layers[1].output)
    expected = np.asarray(keras.activations.gelu(x, approximate=False))
    assert np.max(np.abs(np.asarray(hidden(x)) - expected)) < 1e-6


def test_images_are_standardised_per_channel_and_embeddings_are_not_standardised() -> None:
    X = np.stack([np.full((4, 4), 2.0), np.full((4, 4), 6.0)], axis=-1)[None].repeat(3, 0)
    X[1, ..., 0] = 4.0
    mean, std = standardiser_stats(X)
    assert mean.shape == (2,)
    assert mean[1] == pytest.approx(6.0)
    assert std[1] == 1.0  # a constant channel is left at scale 1
    model = _model([{"type": "Flatten"}], shape=(4, 4, 2))
    assert model.layers[0].name == "standardise"
    emb = _model([{"type": "Embedding", "input_dim": 4, "output_dim": 2}, {"type": "Flatten"}])
    assert not any(layer.name == "standardise" for layer in emb.layers)


def test_a_saved_gelu_model_loads_back(tmp_path: Any) -> None:
    model = _model([{"type": "Dense", "units": 2, "activation": "gelu"}], shape=(2,))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.array([[0.5, -1.0]], dtype=np.float32)
    assert np.allclose(np.asarray(loaded(x)), np.asarray(model(x)))


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        (mlp(16, 0.1, 8), (30,)),
        (
            mlp(12, task="multiclass", classes=3)
            | {
                "layers": [
                    {"type": "Dense", "units": 12, "activation": "relu"},
                    {"type": "BatchNormalization"},
                    {"type": "Dense", "units": 3, "activation": "softmax"},
                ]
            },
            (4,),
        ),
        (cnn(filters=6), (8, 8, 1)),
        (lstm(5), (10, 3)),
        (
            lstm(5) | {"layers": [{"type": "GRU", "units": 5}, {"type": "Dense", "units": 1}]},
            (10, 3),
        ),
        (
            lstm(5)
            | {
                "layers": [
                    {"type": "Conv1D", "filters": 4, "kernel_size": 3},
                    {"type": "SimpleRNN", "units": 3},
                    {"type": "Dense", "units": 1},
                ]
            },
            (10, 3),
        ),
    ],
    ids=["mlp", "batchnorm", "cnn", "lstm", "gru", "conv1d-rnn"],
)
def test_parameter_count_without_tensorflow_matches_keras(
    spec: dict[str, Any], shape: tuple[int, ...]
) -> None:
    parsed = model_spec(spec)
    model = build_model(parsed, input_shape=shape, mean=np.zeros(shape[-1]), std=np.ones(shape[-1]))
    assert count_parameters(parsed.layers, shape) == model.count_params()
