"""Map-aware baseline: a particle filter that map-matches PDR on the walkable graph.

Each particle is a position, a heading offset and a step-length scale. Per 1 s window, every particle
moves by the PDR displacement of the window, rotated by its heading offset and scaled by its scale,
plus noise; heading offset and scale follow small random walks. The weight is multiplied by a Gaussian
of the particle's distance to the walkable graph (the same graph the walks are simulated on and the
NObLe tracker's cells lie on), so particles that leave the corridors die out; systematic resampling
when the effective sample size drops below half. The estimate is the weighted mean of the particles.
The filter starts from the known start position and heading (as PDR and the trackers do), with the
population's step-length spread (the walker's constant is unknown) and a small heading uncertainty.

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
        xs = self.origin[0] + np.arange(shape[0]) * resolution_m
        ys = self.origin[1] + np.arange(shape[1]) * resolution_m
        grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
        point_norms = (points**2).sum(axis=1)
        best = np.empty(len(grid))
        for start in range(0, len(grid), 1024):
            chunk = grid[start:start + 1024]
            squared = (chunk**2).sum(axis=1)[:, None] + point_norms[None, :] - 2 * chunk @ points.T
            best[start:start + 1024] = squared.min(axis=1)
        self.distance = np.sqrt(np.maximum(best, 0.0)).reshape(shape[0], shape[1])

    def __call__(self, xy: FloatArray) -> FloatArray:
        """Distance to the graph of points [..., 2] (nearest grid node)."""
        index = np.rint((xy - self.origin) / self.resolution).astype(np.int64)
        i = np.clip(index[..., 0], 0, self.distance.shape[0] - 1)
        j = np.clip(index[..., 1], 0, self.distance.shape[1] - 1)
        return np.asarray(self.distance[i, j], dtype=np.float64)


def _systematic(weights: FloatArray, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    count = len(weights)
    positions = (rng.random() + np.arange(count)) / count
    return np.minimum(np.searchsorted(np.cumsum(weights), positions), count - 1).astype(np.int64)


def filter_walk(pdr: FloatArray, start: FloatArray, distance_map: DistanceMap, config: ParticleConfig,
                rng: np.random.Generator) -> FloatArray:
    """Map-matched positions [W, 2] at each window's end, from the PDR positions [W, 2] at window ends
    and the known start position."""
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
              config: ParticleConfig) -> FloatArray:
    """Map-matched positions [N, W, 2] of every walk (PDR [N, W, 2], start [N, 2], graph index [N])."""
    rng = np.random.default_rng(config.seed)
    maps = {int(f): DistanceMap(graphs[int(f)], config.resolution_m) for f in np.unique(floor)}
    tracks = [filter_walk(pdr[i], start[i], maps[int(floor[i])], config, rng) for i in range(len(pdr))]
    return np.stack(tracks)
