"""The domain predict endpoint's records <-> model tensors, per task (DESIGN.md section 6).

CTR: ``{"dense": [D numbers or null], "categorical": [F hex strings, ints or null]}`` -> probability.
Localization: ``{"rssi": [N dBm values, 100 or null = not seen]}`` -> longitude, latitude, floor, building.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.repository import MAX_ID, ModelManifest, Task
from service.schemas import CtrInstance, LocalizationInstance, Location

Tensors = dict[str, np.ndarray]
NOT_SEEN_DBM = 100.0
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_categorical(value: str | int | None) -> int:
    """A raw categorical value: hex string as in Criteo files, int, or null/"" (missing -> 0)."""
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        text = value.strip()
        if not 0 < len(text) <= 16 or not HEX_DIGITS.issuperset(text):
            raise InvalidInput(f"categorical value {value!r} is not a hex string of 1-16 digits")
        number = int(text, 16)
    else:
        number = int(value)
    if not 0 <= number < MAX_ID:
        raise InvalidInput(f"categorical id {number} is out of range [0, 2^62)")
    return number


def _width(manifest: ModelManifest, name: str) -> int:
    spec = manifest.input(name)
    assert spec is not None and len(spec.shape) == 2, f"{name} must be a [batch, features] input"
    return spec.shape[1]


def _check_length(index: int, field: str, values: list[Any], width: int) -> None:
    if width != -1 and len(values) != width:
        raise InvalidInput(f"instance {index}: '{field}' has {len(values)} values, the model takes {width}")


def _ctr_tensors(manifest: ModelManifest, instances: list[CtrInstance]) -> Tensors:
    num_categorical = _width(manifest, "categorical")
    has_dense = manifest.input("dense") is not None
    num_dense = _width(manifest, "dense") if has_dense else 0
    dense_rows, categorical_rows = [], []
    for index, instance in enumerate(instances):
        _check_length(index, "categorical", instance.categorical, num_categorical)
        categorical_rows.append([parse_categorical(value) for value in instance.categorical])
        if has_dense:
            if instance.dense is None:
                raise InvalidInput(f"instance {index}: 'dense' is missing")
            _check_length(index, "dense", instance.dense, num_dense)
            dense_rows.append([0.0 if value is None else value for value in instance.dense])
        elif instance.dense:
            raise InvalidInput(f"instance {index}: model '{manifest.name}' takes no dense features")
    tensors = {"categorical": np.asarray(categorical_rows, dtype=np.int64)}
    if has_dense:
        with np.errstate(over="ignore"):
            tensors["dense"] = np.asarray(dense_rows, dtype=np.float64).astype(np.float32)
    return tensors


def _localization_tensors(manifest: ModelManifest, instances: list[LocalizationInstance]) -> Tensors:
    width = _width(manifest, "rssi")
    rows = []
    for index, instance in enumerate(instances):
        _check_length(index, "rssi", instance.rssi, width)
        rows.append([NOT_SEEN_DBM if value is None else value for value in instance.rssi])
    with np.errstate(over="ignore"):
        return {"rssi": np.asarray(rows, dtype=np.float64).astype(np.float32)}


def records_to_tensors(
    manifest: ModelManifest, instances: list[CtrInstance | LocalizationInstance]
) -> Tensors:
    """Turn predict records into the model's input tensors (the data plane preprocesses them later)."""
    wanted = CtrInstance if manifest.task is Task.CTR else LocalizationInstance
    for index, instance in enumerate(instances):
        if not isinstance(instance, wanted):
            fields = "'dense' and 'categorical'" if wanted is CtrInstance else "'rssi'"
            raise InvalidInput(
                f"instance {index}: model '{manifest.name}' ({manifest.task.value}) takes {fields}"
            )
    if manifest.task is Task.CTR:
        return _ctr_tensors(manifest, [item for item in instances if isinstance(item, CtrInstance)])
    return _localization_tensors(
        manifest, [item for item in instances if isinstance(item, LocalizationInstance)]
    )


def tensors_to_predictions(manifest: ModelManifest, outputs: Tensors) -> list[float] | list[Location]:
    """Model outputs -> one prediction per instance."""
    if manifest.task is Task.CTR:
        probability = outputs["probability"]
        return [float(value) for value in probability.reshape(probability.shape[0], -1)[:, 0]]
    columns = {name: outputs[name].reshape(outputs[name].shape[0], -1)[:, 0] for name in outputs}
    return [
        Location(
            longitude=float(columns["longitude"][row]),
            latitude=float(columns["latitude"][row]),
            floor=int(columns["floor"][row]),
            building=int(columns["building"][row]),
        )
        for row in range(len(columns["longitude"]))
    ]
