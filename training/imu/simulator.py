"""Simulated pedestrian IMU data on the UJIIndoorLoc floors (no public IMU data set is available offline).

What the simulator assumes, plainly:

- Walkable graph. Per building-floor, the nodes are the distinct training reference positions; two
  nodes are linked when they lie within ``link_radius_m`` (8 m), and the minimum spanning tree of all
  pairwise distances is added so every floor is one connected graph (in building 1 some of those
  links are 10-30 m long and may cross rooms: the data holds no walls).
- Trajectories. A walker starts at a random node and walks the shortest path to a random destination
  node, then to another, and so on; the polyline is resampled every 0.1 m and smoothed with a Gaussian
  of 0.5 m so corners are rounded. Truth = the smoothed path (within ~0.3 m of the graph).
- Gait. Per walker: step length ~ U(0.6, 0.8) m, cadence ~ U(1.6, 2.0) steps/s; per step 7% length
  and 5% duration jitter. Phone held flat in the hand, x axis along the walking direction, z up; the
  phone's orientation relative to the body is known (no attitude estimation problem is simulated).
- Signals at ``rate_hz`` (50 Hz): vertical acceleration g + A cos(2 pi phase) per step with peak-to-
  peak (l / K)^4 (Weinberg's relation, K ~ U(0.45, 0.55) per walker), forward 1.0 and lateral 0.4 m/s^2
  gait oscillations, yaw rate = d heading / dt plus 0.1 rad/s body sway at half the step rate, and
  pitch/roll rates of 0.2/0.15 rad/s from the gait.
- Start at rest: every walk begins with ``rest_s`` (3 s) of standing still with the phone in the hand
  (zero rates, gravity only, plus the sensor errors below), as when a user opens the app; PDR uses it
  to calibrate the gyroscope bias, as a phone does.
- Sensor errors (a consumer MEMS phone IMU, uncalibrated): white noise 0.05 m/s^2 (accelerometer)
  and 0.005 rad/s (gyroscope) per sample; a constant bias per axis and walk of N(0, 0.05 m/s^2) and
  N(0, 0.005 rad/s) (0.29 deg/s: heading drifts ~20 deg a minute), plus a bias random walk of
  1e-4 rad/s per sqrt(s).
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

GRAVITY = 9.81
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings (defaults as in the module docstring).

    Args:
        rate_hz: IMU sample rate.
        duration_s: length of every trajectory.
        link_radius_m: nodes closer than this are linked.
        corner_smoothing_m: Gaussian sigma that rounds the polyline's corners.
        accel_noise: accelerometer white noise (m/s^2 per sample).
        gyro_noise: gyroscope white noise (rad/s per sample).
        accel_bias: accelerometer constant bias sigma (m/s^2).
        gyro_bias: gyroscope constant bias sigma (rad/s).
        gyro_bias_walk: gyroscope bias random walk (rad/s per sqrt(s)).
        rest_s: seconds standing still at the start of every walk (inside ``duration_s``).
    """

    rate_hz: float = 50.0
    duration_s: float = 120.0
    link_radius_m: float = 8.0
    corner_smoothing_m: float = 0.5
    accel_noise: float = 0.05
    gyro_noise: float = 0.005
    accel_bias: float = 0.05
    gyro_bias: float = 0.005
    gyro_bias_walk: float = 1e-4
    rest_s: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.rest_s < self.duration_s:
            raise ValueError(f"rest_s must be in [0, duration_s), got {self.rest_s}")
        if not 20 <= self.rate_hz <= 400:
            raise ValueError(f"rate_hz must be in [20, 400], got {self.rate_hz}")
        if not self.duration_s > 0 or not self.link_radius_m > 0 or self.corner_smoothing_m < 0:
            raise ValueError("duration, link radius must be positive and smoothing >= 0")
        if min(self.accel_noise, self.gyro_noise, self.accel_bias, self.gyro_bias, self.gyro_bias_walk) < 0:
            raise ValueError("noise and bias levels must be >= 0")


@dataclass(frozen=True)
class FloorGraph:
    """The walkable graph of one building-floor in local metres.

    Args:
        building_floor: building * 5 + floor.
        nodes: [V, 2] node positions.
        neighbours: adjacency lists.
    """

    building_floor: int
    nodes: FloatArray
    neighbours: tuple[tuple[int, ...], ...]

    @staticmethod
    def build(building_floor: int, positions: FloatArray, link_radius_m: float) -> FloorGraph:
        """Nodes = distinct ``positions``; edges = pairs within the radius + a minimum spanning tree."""
        nodes = np.unique(np.round(positions, 1), axis=0)
        distance = np.hypot(*(nodes[:, None, :] - nodes[None, :, :]).transpose(2, 0, 1))  # (V, V)
        edges = {(i, j) for i, j in zip(*np.nonzero(distance < link_radius_m), strict=True) if i < j}
        edges |= _spanning_tree(distance)
        adjacency: list[list[int]] = [[] for _ in nodes]
        for i, j in sorted(edges):
            adjacency[i].append(j)
            adjacency[j].append(i)
        return FloorGraph(building_floor, nodes, tuple(tuple(a) for a in adjacency))

    def edge_points(self, spacing_m: float = 0.25) -> FloatArray:
        """Points every ``spacing_m`` along every edge [P, 2] (where a walker can be)."""
        points = [self.nodes]
        for i, adjacent in enumerate(self.neighbours):
            for j in adjacent:
                if i < j:
                    count = max(int(np.linalg.norm(self.nodes[j] - self.nodes[i]) / spacing_m), 1)
                    fractions = np.arange(1, count)[:, None] / count
                    points.append(self.nodes[i] + fractions * (self.nodes[j] - self.nodes[i]))
        return np.concatenate(points)


def _spanning_tree(distance: FloatArray) -> set[tuple[int, int]]:
    """Prim's minimum spanning tree of a complete graph with the given distances."""
    count = len(distance)
    in_tree = np.zeros(count, dtype=bool)
    in_tree[0] = True
    best = distance[0].copy()
    parent = np.zeros(count, dtype=np.int64)
    edges = set()
    for _ in range(count - 1):
        candidate = np.where(in_tree, np.inf, best)
        j = int(np.argmin(candidate))
        edges.add((min(j, int(parent[j])), max(j, int(parent[j]))))
        in_tree[j] = True
        closer = distance[j] < best
        best = np.where(closer, distance[j], best)
        parent = np.where(closer, j, parent)
    return edges


@dataclass(frozen=True)
class Trajectory:
    """One simulated walk.

    Args:
        building_floor: building * 5 + floor.
        accel: [T, 3] accelerometer (m/s^2), phone frame.
        gyro: [T, 3] gyroscope (rad/s), phone frame.
        position: [T, 2] true local position (m).
        heading: [T] true heading (rad, from the local x axis).
        distance: [T] distance walked so far (m).
    """

    building_floor: int
    accel: FloatArray
    gyro: FloatArray
    position: FloatArray
    heading: FloatArray
    distance: FloatArray


def shortest_path(graph: FloorGraph, source: int, target: int) -> list[int]:
    """Nodes of the shortest (Euclidean edge length) path from ``source`` to ``target`` (Dijkstra)."""
    distance = {source: 0.0}
    previous: dict[int, int] = {}
    queue = [(0.0, source)]
    while queue:
        d, node = heapq.heappop(queue)
        if node == target:
            break
        if d > distance[node]:
            continue
        for n in graph.neighbours[node]:
            candidate = d + float(np.linalg.norm(graph.nodes[n] - graph.nodes[node]))
            if candidate < distance.get(n, np.inf):
                distance[n], previous[n] = candidate, node
                heapq.heappush(queue, (candidate, n))
    path = [target]
    while path[-1] != source:
        path.append(previous[path[-1]])
    return path[::-1]


def random_route(graph: FloorGraph, length_m: float, rng: np.random.Generator) -> FloatArray:
    """Node positions [R, 2] of a walk at least ``length_m`` long: from a random node, the shortest path
    to a random destination, then to another, and so on (people walk somewhere, not at random)."""
    route = [int(rng.integers(len(graph.nodes)))]
    walked = 0.0
    while walked < length_m:
        target = int(rng.integers(len(graph.nodes)))
        if target == route[-1]:
            continue
        leg = shortest_path(graph, route[-1], target)[1:]
        walked += float(np.linalg.norm(np.diff(graph.nodes[[route[-1], *leg]], axis=0), axis=1).sum())
        route += leg
    return graph.nodes[route]


def smooth_path(route: FloatArray, spacing_m: float, sigma_m: float) -> FloatArray:
    """The polyline resampled every ``spacing_m`` with corners rounded by a Gaussian of ``sigma_m``."""
    lengths = np.linalg.norm(np.diff(route, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    samples = np.arange(0.0, arc[-1], spacing_m)
    path = np.stack([np.interp(samples, arc, route[:, k]) for k in range(2)], axis=1)
    if sigma_m <= 0:
        return path
    half = int(3 * sigma_m / spacing_m)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * spacing_m / sigma_m) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(path[:1], half, 0), path, np.repeat(path[-1:], half, 0)])
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=1)


@dataclass(frozen=True)
class _Gait:
    """Per-sample gait state: distance walked [T], step index [T], phase in the step [T], step length [T]."""

    distance: FloatArray
    step: npt.NDArray[np.int64]
    phase: FloatArray
    step_length: FloatArray


def _gait(times: FloatArray, rng: np.random.Generator) -> _Gait:
    """Steps of one walker (step length ~ U(0.6, 0.8) m, cadence ~ U(1.6, 2.0) Hz, jittered per step)."""
    mean_length, cadence = rng.uniform(0.6, 0.8), rng.uniform(1.6, 2.0)
    count = int(times[-1] * cadence * 1.5) + 4
    durations = np.maximum(1.0 / cadence * (1 + 0.05 * rng.standard_normal(count)), 0.3)
    lengths = np.maximum(mean_length * (1 + 0.07 * rng.standard_normal(count)), 0.3)
    starts = np.concatenate([[0.0], np.cumsum(durations)])
    walked = np.concatenate([[0.0], np.cumsum(lengths)])
    step = np.searchsorted(starts, times, side="right") - 1
    phase = (times - starts[step]) / durations[step]
    return _Gait(walked[step] + phase * lengths[step], step, phase, lengths[step])


def _smooth_in_time(signal: FloatArray, sigma_samples: float) -> FloatArray:
    half = max(int(3 * sigma_samples), 1)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_samples) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(signal[:1], half), signal, np.repeat(signal[-1:], half)])
    return np.convolve(padded, kernel, mode="valid")


def simulate_walk(graph: FloorGraph, config: SimConfig, rng: np.random.Generator) -> Trajectory:
    """One trajectory on ``graph`` with IMU signals (assumptions in the module docstring)."""
    dt = 1.0 / config.rate_hz
    rest = round(config.rest_s * config.rate_hz)
    times = np.arange(int(config.duration_s * config.rate_hz) - rest, dtype=np.float64) * dt
    gait = _gait(times, rng)
    path = smooth_path(random_route(graph, gait.distance[-1] + 2.0, rng), 0.1, config.corner_smoothing_m)
    arc = np.arange(len(path)) * 0.1
    position = np.stack([np.interp(gait.distance, arc, path[:, k]) for k in range(2)], axis=1)  # (T, 2)
    tangent = np.gradient(path, axis=0)
    path_heading = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
    # people turn in ~0.3 s, even at a dead end where the rounded path reverses within centimetres
    heading = _smooth_in_time(np.interp(gait.distance, arc, path_heading), 0.15 * config.rate_hz)
    yaw_rate = np.gradient(heading, dt)
    speed = np.gradient(gait.distance, dt)
    two_pi_phase = 2 * np.pi * gait.phase
    alternate = np.pi * (gait.step + gait.phase)  # half the step rate: left/right sway
    peak_to_peak = (gait.step_length / rng.uniform(0.45, 0.55)) ** 4  # Weinberg: l = K (a_max - a_min)^(1/4)
    accel = np.stack([1.0 * np.sin(two_pi_phase),
                      0.4 * np.sin(alternate) + speed * yaw_rate,
                      GRAVITY + 0.5 * peak_to_peak * np.cos(two_pi_phase)], axis=1)  # (T, 3)
    gyro = np.stack([0.15 * np.sin(two_pi_phase), 0.2 * np.cos(two_pi_phase),
                     yaw_rate + 0.1 * np.sin(alternate)], axis=1)  # (T, 3)
    if rest:  # standing still first: gravity only, no rotation
        accel = np.concatenate([np.tile([0.0, 0.0, GRAVITY], (rest, 1)), accel])
        gyro = np.concatenate([np.zeros((rest, 3)), gyro])
        position = np.concatenate([np.repeat(position[:1], rest, axis=0), position])
        heading = np.concatenate([np.full(rest, heading[0]), heading])
        walked = np.concatenate([np.zeros(rest), gait.distance])
    else:
        walked = gait.distance
    accel = accel + config.accel_bias * rng.standard_normal(3)
    accel = accel + config.accel_noise * rng.standard_normal(accel.shape)
    bias_walk = np.cumsum(config.gyro_bias_walk * np.sqrt(dt) * rng.standard_normal(gyro.shape), axis=0)
    gyro = gyro + config.gyro_bias * rng.standard_normal(3) + bias_walk
    gyro = gyro + config.gyro_noise * rng.standard_normal(gyro.shape)
    return Trajectory(graph.building_floor, accel, gyro, position, heading, walked)


def floor_graphs(xy: FloatArray, building_floor: npt.NDArray[np.int64],
                 config: SimConfig) -> list[FloorGraph]:
    """The walkable graph of every building-floor present in ``building_floor`` (positions ``xy`` [N, 2])."""
    return [FloorGraph.build(int(bf), xy[building_floor == bf], config.link_radius_m)
            for bf in np.unique(building_floor)]


def simulate(graphs: list[FloorGraph], count: int, config: SimConfig, seed: int) -> list[Trajectory]:
    """``count`` trajectories, floors drawn in proportion to their number of nodes."""
    rng = np.random.default_rng(seed)
    sizes = np.array([len(g.nodes) for g in graphs], dtype=np.float64)
    floors = rng.choice(len(graphs), size=count, p=sizes / sizes.sum())
    return [simulate_walk(graphs[f], config, rng) for f in floors]
