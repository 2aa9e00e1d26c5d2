"""The MLflow log-batch fast path: the common plain form becomes columns, anything else None.

``None`` sends the batch through the field-by-field checks, which word the errors (the
conformance tests cover those); here the fast path must never accept what they would refuse
nor change a value.
"""

from __future__ import annotations

import pytest

from hub_ext.experiments.handlers.mlflow_convert import plain_metrics


def point(key="loss", value=1.5, timestamp=10, step=3, **extra):
    return {"key": key, "value": value, "timestamp": timestamp, "step": step, **extra}


def test_one_key_keeps_every_point_in_order():
    items = [point(value=float(i), step=i, timestamp=100 + i) for i in range(5)]
    (column,) = plain_metrics(items)
    assert column.key == "loss"
    assert list(column.steps) == [0, 1, 2, 3, 4]
    assert list(column.timestamps) == [100, 101, 102, 103, 104]
    assert list(column.values) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_keys_are_grouped_in_first_seen_order():
    items = [point("b", 1, step=0), point("a", 2, step=0), point("b", 3, step=1)]
    columns = plain_metrics(items)
    assert [(c.key, list(c.steps), list(c.values)) for c in columns] == [
        ("b", [0, 1], [1.0, 3.0]),
        ("a", [0], [2.0]),
    ]


def test_missing_step_is_zero_and_integer_values_are_doubles():
    item = point(value=7)
    del item["step"]
    (column,) = plain_metrics([item])
    assert list(column.steps) == [0] and column.values[0] == 7.0


@pytest.mark.parametrize(
    "items",
    [
        [],
        [["loss", 1.0, 10, 0]],
        [point(), "loss"],
        [{"value": 1.0, "timestamp": 10, "step": 0}],
        [{"key": "loss", "timestamp": 10, "step": 0}],
        [{"key": "loss", "value": 1.0, "step": 0}],
        [point(key="")],
        [point(key=3)],
        [point(value="1.0")],
        [point(value=None)],
        [point(value=True)],
        [point(timestamp=1.5)],
        [point(timestamp="10")],
        [point(step=1.0)],
        [point(step=False)],
        [point(step=2**63)],
        [point(timestamp=-(2**63) - 1)],
        [point(), point(step="1")],
    ],
    ids=[
        "empty", "entry-not-an-object", "one-entry-not-an-object", "no-key", "no-value",
        "no-timestamp", "empty-key", "key-not-a-string", "value-a-string", "value-null",
        "value-a-bool", "timestamp-a-float", "timestamp-a-string", "step-a-float",
        "step-a-bool", "step-past-64-bits", "timestamp-below-64-bits", "second-entry-bad",
    ],
)  # fmt: skip
def test_anything_unusual_takes_the_checked_path(items):
    assert plain_metrics(items) is None
