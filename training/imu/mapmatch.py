"""Map-aware baseline: a particle filter that map-matches PDR on the walkable graph.

Each particle is a position, a heading offset and a step-length scale. Per 1 s window, every particle
moves by the PDR displacement of the window, rotated by its heading offset and scaled by its scale,
plus noise; heading offset and scale follow small random walks. The weight is multiplied by a Gaussian
of the particle's distance to the walkable graph (the same graph the walks are simulated on and the
NObLe tracker's cells lie on), so particles that leave the corridors die out; systematic resampling
when the effective sample size drops below half. The estimate is the weighted mean of the particles.
The filter starts from the known start position and heading (as PDR and the trackers do), with the
population's step-length spread (the walker's constant is unknown) and a small heading uncertainty.

The hybrid filter (``CellEvidence``, ``map_match(..., cell_probabilities, cell_centres, weight)``) is
the same filter with a classifier's per-window cell probabilities as an extra, tempered likelihood.

The distance to the graph comes from a grid (``DistanceMap``, ``resolution_m``) precomputed per floor
from points every 0.25 m along its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.imu.simulator import FloorGraph

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ParticleConfig:
    """Particle filter settings.

    Args:
        particles: particles per walk.
        position_noise_m: position noise added per window (m).
        heading_noise: heading-offset random walk per window (rad).
        scale_noise: step-length-scale random walk per window.
        start_heading_sigma: initial heading offset spread (rad).
        scale_range: initial step-length scale drawn uniformly from this range.
        map_sigma_m: width of the Gaussian on the distance to the graph.
        resolution_m: distance grid resolution.
        seed: the filter's random stream.
    """

    particles: int = 300
    position_noise_m: float = 0.25
    heading_noise: float = 0.02
    scale_noise: float = 0.005
    start_heading_sigma: float = 0.05
    scale_range: tuple[float, float] = (0.85, 1.15)
    map_sigma_m: float = 1.0
    resolution_m: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.particles < 2 or not self.map_sigma_m > 0 or not self.resolution_m > 0:
            raise ValueError("need >= 2 particles and positive map sigma and resolution")
        if min(self.position_noise_m, self.heading_noise, self.scale_noise, self.start_heading_sigma) < 0:
            raise ValueError("noise levels must be >= 0")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be positive and ordered, got {self.scale_range}")


class DistanceMap:
    """Distance (m) from any point to the walkable graph of one floor, on a grid.

    Args:
        graph: the floor.
        resolution_m: grid step.
        margin_m: grid border around the graph (points beyond it get the border's distance).
    """

    def __init__(self, graph: FloorGraph, resolution_m: float, margin_m: float = 20.0) -> None:
        points = np.unique(np.round(graph.edge_points(0.25) / 0.25) * 0.25, axis=0)
        self.resolution = resolution_m
        self.origin = points.min(axis=0) - margin_m
        shape = np.ceil((points.max(axis=0) + margin_m - self.origin) / resolution_m).astype(int) + 1
        self.shape = (int(shape[0]), int(shape[1]))
        self.distance = np.sqrt(np.maximum(_nearest(self.grid_points(), points)[1], 0.0)).reshape(self.shape)

    def grid_index(self, xy: FloatArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Grid node (i, j) nearest to each point [..., 2] (clipped to the grid)."""
        index = np.rint((xy - self.origin) / self.resolution).astype(np.int64)
        return (np.clip(index[..., 0], 0, self.shape[0] - 1), np.clip(index[..., 1], 0, self.shape[1] - 1))

    def grid_points(self) -> FloatArray:
        """Every grid node [shape[0] * shape[1], 2] (row-major)."""
        xs = self.origin[0] + np.arange(self.shape[0]) * self.resolution
        ys = self.origin[1] + np.arange(self.shape[1]) * self.resolution
        return np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)

    def __call__(self, xy: FloatArray) -> FloatArray:
        """Distance to the graph of points [..., 2] (nearest grid node)."""
        return np.asarray(self.distance[self.grid_index(xy)], dtype=np.float64)


def _nearest(queries: FloatArray, points: FloatArray) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Index of the nearest of ``points`` [P, 2] to every query [Q, 2] and its squared distance."""
    point_norms = (points**2).sum(axis=1)
    index = np.empty(len(queries), dtype=np.int64)
    best = np.empty(len(queries))
    for start in range(0, len(queries), 1024):
        chunk = queries[start:start + 1024]
        squared = (chunk**2).sum(axis=1)[:, None] + point_norms[None, :] - 2 * chunk @ points.T
        index[start:start + 1024] = squared.argmin(axis=1)
        best[start:start + 1024] = squared[np.arange(len(chunk)), index[start:start + 1024]]
    return index, best


class CellMap:
    """Which cell (nearest centre, as the NObLe tracker labels positions) each point of a floor lies in,
    on the grid of the floor's ``DistanceMap``.

    Args:
        distance_map: the floor's distance grid (its extent and resolution are reused).
        centres: [C, 2] the floor's cell centres.
    """

    def __init__(self, distance_map: DistanceMap, centres: FloatArray) -> None:
        self.distance_map = distance_map
        self.count = len(centres)
        self.cell = _nearest(distance_map.grid_points(), centres)[0].reshape(distance_map.shape)

    def __call__(self, xy: FloatArray) -> npt.NDArray[np.int64]:
        """Cell index of points [..., 2]."""
        return np.asarray(self.cell[self.distance_map.grid_index(xy)], dtype=np.int64)


def _systematic(weights: FloatArray, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    count = len(weights)
    positions = (rng.random() + np.arange(count)) / count
    return np.minimum(np.searchsorted(np.cumsum(weights), positions), count - 1).astype(np.int64)


@dataclass(frozen=True)
class CellEvidence:
    """A classifier's cell probabilities used as an extra likelihood term (the hybrid filter).

    Each particle's weight is multiplied by ``((1 - floor) p(cell) + floor / C) ** weight``, where
    ``p`` is the classifier's probability of the cell the particle lies in at that window, ``C`` the
    floor's number of cells and ``floor`` a share of uniform probability (so a confident mistake
    cannot wipe out every particle); ``weight`` tempers evidence that is not independent of the PDR
    input the filter already uses. ``weight = 0`` is the plain particle filter.

    Args:
        probabilities: [W, C] per window, over the floor's cells.
        cells: the floor's cell lookup.
        weight: exponent on the cell likelihood.
        floor: uniform share mixed into the probabilities.
    """

    probabilities: FloatArray
    cells: CellMap
    weight: float
    floor: float = 0.05

    def __call__(self, t: int, position: FloatArray) -> FloatArray:
        count = self.probabilities.shape[1]
        p = self.probabilities[t, self.cells(position)]
        return np.asarray(((1 - self.floor) * p + self.floor / count) ** self.weight, dtype=np.float64)


def filter_walk(pdr: FloatArray, start: FloatArray, distance_map: DistanceMap, config: ParticleConfig,
                rng: np.random.Generator, evidence: CellEvidence | None = None) -> FloatArray:
    """Map-matched positions [W, 2] at each window's end, from the PDR positions [W, 2] at window ends
    and the known start position; ``evidence`` adds a classifier's cell probabilities to the weights
    (``None``: the plain map-matching filter, the baseline)."""
    n = config.particles
    position = np.repeat(np.asarray(start, dtype=np.float64)[None, :], n, axis=0)
    offset = config.start_heading_sigma * rng.standard_normal(n)
    scale = rng.uniform(*config.scale_range, size=n)
    weights = np.full(n, 1.0 / n)
    previous = np.asarray(start, dtype=np.float64)
    estimate = np.zeros_like(pdr)
    for t, current in enumerate(pdr):
        dx, dy = current - previous
        previous = current
        cos, sin = np.cos(offset), np.sin(offset)
        position = position + scale[:, None] * np.stack([cos * dx - sin * dy, sin * dx + cos * dy], axis=1)
        if dx or dy:  # standing still: nothing moves
            position = position + config.position_noise_m * rng.standard_normal((n, 2))
            offset = offset + config.heading_noise * rng.standard_normal(n)
            scale = scale + config.scale_noise * rng.standard_normal(n)
        likelihood = np.exp(-0.5 * (distance_map(position) / config.map_sigma_m) ** 2)
        if evidence is not None and evidence.weight > 0:
            likelihood = likelihood * evidence(t, position)
        updated = weights * likelihood
        total = updated.sum()
        weights = updated / total if total > 1e-300 else np.full(n, 1.0 / n)
        estimate[t] = weights @ position
        if 1.0 / np.sum(weights**2) < n / 2:
            keep = _systematic(weights, rng)
            position, offset, scale = position[keep], offset[keep], scale[keep]
            weights = np.full(n, 1.0 / n)
    return estimate


def map_match(pdr: FloatArray, start: FloatArray, floor: npt.NDArray[np.int64], graphs: list[FloorGraph],
              config: ParticleConfig, cell_probabilities: list[FloatArray] | None = None,
              cell_centres: list[FloatArray] | None = None, evidence_weight: float = 0.0,
              evidence_floor: float = 0.05) -> FloatArray:
    """Map-matched positions [N, W, 2] of every walk (PDR [N, W, 2], start [N, 2], graph index [N]).

    With ``cell_probabilities`` (per walk [W, C] over its floor's cells, whose centres per graph are
    ``cell_centres``) and ``evidence_weight > 0``: the hybrid filter (``CellEvidence``), with every
    other setting of ``config`` as in the plain filter.
    """
    if (cell_probabilities is None) != (cell_centres is None):
        raise ValueError("cell_probabilities and cell_centres go together")
    if evidence_weight < 0 or not 0 < evidence_floor <= 1:
        raise ValueError(f"need evidence_weight >= 0 and evidence_floor in (0, 1], got "
                         f"{evidence_weight}, {evidence_floor}")
    rng = np.random.default_rng(config.seed)
    maps = {int(f): DistanceMap(graphs[int(f)], config.resolution_m) for f in np.unique(floor)}
    cells = ({f: CellMap(m, cell_centres[f]) for f, m in maps.items()} if cell_centres is not None else {})
    tracks = []
    for i in range(len(pdr)):
        f = int(floor[i])
        evidence = None
        if cell_probabilities is not None:
            if cell_probabilities[i].shape != (len(pdr[i]), cells[f].count):
                raise ValueError(f"walk {i}: cell probabilities {cell_probabilities[i].shape}, expected "
                                 f"{(len(pdr[i]), cells[f].count)} (windows, cells of its floor)")
            evidence = CellEvidence(cell_probabilities[i], cells[f], evidence_weight, evidence_floor)
        tracks.append(filter_walk(pdr[i], start[i], maps[f], config, rng, evidence))
    return np.stack(tracks)
