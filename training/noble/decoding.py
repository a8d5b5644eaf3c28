"""How a NObLe cell distribution becomes coordinates (torch ops only, so the same code is exported to ONNX).

Four decodes, each over a chosen subset of the network's resolutions (``cell_sizes``):

- ``centre``: the centre of the most probable cell of the finest chosen resolution (any building-floor).
- ``topk``: the probability-weighted mean of the centres of the ``top_k`` most probable cells of ALL
  building-floors, averaged over the chosen resolutions (the first decode of this project: a prediction
  can fall between two buildings when the top cells disagree).
- ``plan``: on the floor plan. Only the cells of the predicted building-floor count: the probability-
  weighted mean of the ``top_k`` most probable cells OF THAT building-floor, averaged over the chosen
  resolutions; when that point is farther than ``snap_m`` from every occupied finest cell of the floor
  (it fell between corridors), it is replaced by the nearest occupied cell's centre. The result is thus
  on the predicted building-floor, within ``snap_m`` of a place where training fingerprints were taken.
- ``building``: on the floor plan too, but the weighted mean is taken over the ``top_k`` most probable
  cells of EVERY floor of the predicted building (floors are stacked, so a neighbouring floor's
  probability still says where in the plan the phone is); the point is then snapped onto the predicted
  building-floor exactly as ``plan`` does (``snap_m`` is required), so it too ends within ``snap_m`` of
  an occupied cell of the predicted building-floor.

A cell's centre is the mean of its training positions, so ``centre`` and ``top_k = 1`` of ``plan``
always return such a place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch

SNAP_FAR = 1e12  # squared distance given to cells of other building-floors when snapping
FLOORS_PER_BUILDING = 5  # building-floor index = building * 5 + floor


class Decode(StrEnum):
    """How a cell distribution becomes coordinates (see the module docstring)."""

    CENTRE = "centre"
    TOPK = "topk"
    PLAN = "plan"
    BUILDING = "building"


@dataclass(frozen=True)
class DecodeConfig:
    """One decode.

    Args:
        kind: centre, topk (all building-floors), plan (the predicted building-floor only) or building
            (the predicted building's floors, snapped onto the predicted floor).
        top_k: cells averaged per resolution (topk, plan and building).
        cell_sizes: resolutions used, by cell side in metres (None: all of the model's).
        snap_m: plan and building: farther than this from every occupied finest cell of the predicted
            building-floor, the point snaps to the nearest one (None: never snap; building requires it).

    Example:
        >>> DecodeConfig(Decode.PLAN, top_k=4, cell_sizes=(2.0, 4.0)).label()
        'plan k=4 cells 2/4 m snap 2 m'
    """

    kind: Decode = Decode.PLAN
    top_k: int = 4
    cell_sizes: tuple[float, ...] | None = None
    snap_m: float | None = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Decode(self.kind))
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.cell_sizes is not None:
            if not self.cell_sizes or min(self.cell_sizes) <= 0:
                raise ValueError(f"cell sizes must be positive, got {self.cell_sizes}")
            object.__setattr__(self, "cell_sizes", tuple(sorted(float(s) for s in self.cell_sizes)))
        if self.snap_m is not None and not self.snap_m > 0:
            raise ValueError(f"snap_m must be positive or None, got {self.snap_m}")
        if self.kind is Decode.BUILDING and self.snap_m is None:
            raise ValueError("the building decode needs snap_m (it snaps onto the predicted floor)")

    def label(self) -> str:
        sizes = "all cells" if self.cell_sizes is None else \
            "cells " + "/".join(f"{s:g}" for s in self.cell_sizes) + " m"
        if self.kind is Decode.CENTRE:
            return f"centre {sizes}"
        snap = ""
        if self.kind in (Decode.PLAN, Decode.BUILDING):
            snap = " no snap" if self.snap_m is None else f" snap {self.snap_m:g} m"
        return f"{self.kind.value} k={self.top_k} {sizes}{snap}"

    def to_dict(self) -> dict[str, Any]:
        sizes = None if self.cell_sizes is None else list(self.cell_sizes)
        return {"kind": self.kind.value, "top_k": self.top_k, "cell_sizes": sizes, "snap_m": self.snap_m}

    @staticmethod
    def from_dict(value: dict[str, Any] | str, top_k: int = 4) -> DecodeConfig:
        """From ``to_dict`` output, or a bare kind name (checkpoints written before decode settings)."""
        if isinstance(value, str):
            return DecodeConfig(Decode(value), top_k=top_k, snap_m=None)
        sizes = value.get("cell_sizes")
        return DecodeConfig(Decode(value["kind"]), int(value["top_k"]),
                            None if sizes is None else tuple(float(s) for s in sizes),
                            None if value.get("snap_m") is None else float(value["snap_m"]))


def resolution_indices(model_sizes: tuple[float, ...], config: DecodeConfig) -> list[int]:
    """Indices (finest first) of the model's resolutions that ``config`` uses."""
    if config.cell_sizes is None:
        return list(range(len(model_sizes)))
    missing = [s for s in config.cell_sizes if s not in model_sizes]
    if missing:
        raise ValueError(f"decode uses cell sizes {missing} m the model lacks (it has {list(model_sizes)})")
    return [model_sizes.index(s) for s in config.cell_sizes]


def _weighted_top(probs: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """Probability-weighted mean [B, 2] of the ``k`` largest entries of ``probs`` [B, C]."""
    top, index = torch.topk(probs, min(k, probs.shape[1]), dim=1)  # (B, k)
    weights = top / torch.clamp(top.sum(dim=1, keepdim=True), min=1e-30)
    return (weights[:, :, None] * centres[index]).sum(dim=1)


def decode_xy(cells: list[torch.Tensor], centres: list[torch.Tensor], on_floor: list[torch.Tensor],
              building_floor: torch.Tensor, model_sizes: tuple[float, ...],
              config: DecodeConfig) -> torch.Tensor:
    """Local (x, y) [B, 2].

    Args:
        cells: cell probabilities [B, C_r] per resolution (finest first).
        centres: cell centres [C_r, 2] per resolution.
        on_floor: one-hot building-floor of each cell [C_r, BF] per resolution.
        building_floor: the predicted building-floor [B] (int64).
        model_sizes: the model's cell sizes, finest first.
        config: the decode.
    """
    used = resolution_indices(model_sizes, config)
    if config.kind is Decode.CENTRE:
        r = used[0]
        return centres[r][torch.argmax(cells[r], dim=1)]
    if config.kind is Decode.TOPK:
        return torch.stack([_weighted_top(cells[r], centres[r], config.top_k) for r in used]).mean(dim=0)
    masks = {r: on_floor[r].t()[building_floor] for r in set(used) | {0}}  # (B, C_r): 1 on the floor
    weigh = masks
    if config.kind is Decode.BUILDING:  # 1 on every floor of the predicted building
        building = torch.div(building_floor, FLOORS_PER_BUILDING, rounding_mode="floor")  # (B,)
        weigh = {}
        for r in used:
            # (C_r,): from buffers only, so the ONNX exporter folds it into a constant (tested)
            cell_building = torch.div(torch.argmax(on_floor[r], dim=1), FLOORS_PER_BUILDING,
                                      rounding_mode="floor")
            weigh[r] = (cell_building[None, :] == building[:, None]).to(cells[r].dtype)
    xy = torch.stack([_weighted_top(cells[r] * weigh[r], centres[r], config.top_k) for r in used]).mean(dim=0)
    if config.snap_m is None:
        return xy
    squared = ((xy[:, None, :] - centres[0][None, :, :]) ** 2).sum(dim=2) + (1.0 - masks[0]) * SNAP_FAR
    nearest = torch.argmin(squared, dim=1)  # (B,)
    far = torch.gather(squared, 1, nearest[:, None]) > config.snap_m**2  # (B, 1)
    return torch.where(far, centres[0][nearest], xy)
