"""The evaluation report's and the reference profile's shapes over REST (training/report.py
and training/profile.py write them, as JSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# A curve threshold of null is scikit-learn's infinite one: above every score.
Floats = list[float | None]


class RocCurve(BaseModel):
    fpr: Floats
    tpr: Floats
    thresholds: Floats
    auc: float


class PrCurve(BaseModel):
    precision: Floats
    recall: Floats
    thresholds: Floats
    average_precision: float


class Calibration(BaseModel):
    n_bins: int
    mean_predicted: Floats = Field(description="Mean predicted probability in each bin.")
    fraction_positive: Floats = Field(description="Share of positives in each bin.")
    brier: float


class ClassCurves(BaseModel):
    class_: int = Field(
        alias="class",
        description="The class against the rest (binary: class 1, the positive class).",
    )
    roc: RocCurve | None = Field(description="null where the rows hold one kind only.")
    pr: PrCurve | None
    calibration: Calibration | None


class ClassScores(BaseModel):
    class_: int = Field(alias="class")
    precision: float
    recall: float
    f1: float
    support: int


class ThresholdRow(BaseModel):
    threshold: float = Field(description="Rows with P(positive) at or above it are positive.")
    precision: float
    recall: float
    f1: float
    specificity: float


class Points(BaseModel):
    actual: Floats
    predicted: Floats
    sampled: bool = Field(description="true: an evenly spaced sample of the rows.")


class Histogram(BaseModel):
    edges: Floats
    counts: list[int]


class Residuals(BaseModel):
    mean: float
    std: float
    histogram: Histogram


class Decile(BaseModel):
    decile: int
    low: float
    high: float
    n: int
    mae: float
    rmse: float
    bias: float = Field(description="Mean of predicted minus actual.")


class ReportSection(BaseModel):
    source: Literal["fold", "test", "training"] = Field(
        description="'fold': that fold's model on its validation rows; 'test': the "
        "version's model on the rows test_split held out; 'training': the version's "
        "model on the rows it trained on (no cross-validation, or a version registered "
        "before reports): they say it fits them, not how it does on new rows."
    )
    fold: int | None = None
    n_rows: int
    metrics: dict[str, Any]
    # Classification
    curves: list[ClassCurves] | None = None
    brier: float | None = None
    per_class: list[ClassScores] | None = None
    confusion_matrix: list[list[int]] | None = None
    threshold_table: list[ThresholdRow] | None = Field(
        default=None, description="Binary only: the metrics at thresholds 0, 0.05, …, 1."
    )
    # Regression
    points: Points | None = None
    residuals: Residuals | None = None
    deciles: list[Decile] | None = None


class EvaluationReport(BaseModel):
    model_name: str
    version: int
    task: str
    class_labels: list[str] | None
    threshold: float | None = Field(
        description="Binary: the P(positive) from which a row is labelled positive, in "
        "these figures and by the predictor alike."
    )
    sections: list[ReportSection]
    links: dict[str, str]


class Summary(BaseModel):
    count: int
    mean: float
    std: float = Field(description="Population standard deviation.")
    min: float
    max: float
    quantiles: dict[str, float] = Field(description='Keyed by the quantile: "0.5" is the median.')
    histogram: Histogram


class FeatureProfile(Summary):
    name: str


class ClassShare(BaseModel):
    label: str
    count: int
    share: float


class ReferenceProfile(BaseModel):
    model_name: str
    version: int
    kind: str
    n_rows: int = Field(description="The rows the version's model was trained on.")
    features: list[FeatureProfile] = Field(
        description="Per feature: a table's column, an image's channel, a sequence's "
        "per-step feature."
    )
    target: Summary | None = Field(description="A regression's target; null otherwise.")
    classes: list[ClassShare] | None = Field(
        description="A classification's class balance; null for a regression."
    )
    links: dict[str, str]


class FeatureDrift(BaseModel):
    name: str
    test: Literal["chi_squared", "wasserstein"]
    statistic: float = Field(
        description="chi_squared: the test statistic; wasserstein: the distance in units "
        "of the feature's training standard deviation."
    )
    p_value: float | None = Field(description="chi_squared only.")
    threshold: float = Field(
        description="chi_squared: drifted when p_value is below it (0.01 over the number of "
        "features); wasserstein: drifted when the distance is above it (0.1)."
    )
    drifted: bool


class DriftRead(BaseModel):
    model_name: str
    version: int
    dataset_id: str
    n_rows: int
    test: Literal["chi_squared", "wasserstein"] = Field(
        description="chi_squared up to 1,000 rows, wasserstein above."
    )
    features: list[FeatureDrift]
    drifted_features: list[str]
    share_drifted: float
    drifted: bool = Field(description="Whether any feature drifted.")
