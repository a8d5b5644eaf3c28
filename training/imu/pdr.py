"""Pedestrian dead reckoning (PDR): step detection, Weinberg step length, gyroscope heading integration.

Given the start position and heading (the trackers get them too), for each detected step the position
advances by ``K (a_max - a_min)^(1/4)`` metres along the heading integrated from the yaw rate. As a
phone does, the gyroscope bias is calibrated while the user stands still: the mean yaw rate of the
first ``calibration_s`` seconds (the walk's rest at the start) is subtracted (``calibration_s = 0``:
no calibration). What remains (the calibration's noise, the bias random walk, the walker's unknown
step-length constant) drifts; that drift is what a map-aware tracker removes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.imu.simulator import GRAVITY

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PdrConfig:
    """PDR settings.

    Args:
        rate_hz: IMU sample rate.
        weinberg_k: step length constant (population mean; a walker's own K is unknown).
        smoothing_s: moving-average window on the vertical acceleration.
        peak_threshold: minimum height of a step peak above gravity (m/s^2).
        min_step_s: minimum time between two steps.
        calibration_s: seconds at rest at the start used to estimate the gyroscope bias (0: none).
    """

    rate_hz: float = 50.0
    weinberg_k: float = 0.5
    smoothing_s: float = 0.15
    peak_threshold: float = 0.6
    min_step_s: float = 0.3
    calibration_s: float = 3.0

    def __post_init__(self) -> None:
        if self.calibration_s < 0:
            raise ValueError(f"calibration_s must be >= 0, got {self.calibration_s}")
        if not self.rate_hz > 0 or not self.weinberg_k > 0 or not self.min_step_s > 0:
            raise ValueError("rate, Weinberg K and minimum step time must be positive")


def detect_steps(vertical: FloatArray, config: PdrConfig) -> npt.NDArray[np.int64]:
    """Sample indices of step peaks in the vertical acceleration [T]."""
    width = max(int(config.smoothing_s * config.rate_hz), 1)
    smooth = np.convolve(vertical, np.ones(width) / width, mode="same")
    local_max = (smooth[1:-1] > smooth[:-2]) & (smooth[1:-1] >= smooth[2:])
    candidates = np.flatnonzero(local_max & (smooth[1:-1] > GRAVITY + config.peak_threshold)) + 1
    gap = config.min_step_s * config.rate_hz
    steps: list[int] = []
    for index in candidates:
        if not steps or index - steps[-1] >= gap:
            steps.append(int(index))
        elif smooth[index] > smooth[steps[-1]]:
            steps[-1] = int(index)
    return np.asarray(steps, dtype=np.int64)


def dead_reckon(accel: FloatArray, gyro: FloatArray, start: FloatArray, start_heading: float,
                config: PdrConfig) -> tuple[FloatArray, FloatArray]:
    """PDR track of one walk: positions [T, 2] (updated at each step) and headings [T] (rad)."""
    calibration = round(config.calibration_s * config.rate_hz)
    bias = float(gyro[:calibration, 2].mean()) if calibration > 0 else 0.0
    heading = start_heading + np.cumsum(gyro[:, 2] - bias) / config.rate_hz
    steps = detect_steps(accel[:, 2], config)
    bounds = np.concatenate([[0], steps, [len(accel)]])
    position = np.repeat(np.asarray(start, dtype=np.float64)[None, :], len(accel), axis=0)
    current = position[0].copy()
    for k, peak in enumerate(steps):
        segment = accel[bounds[k]:bounds[k + 2], 2]  # from the previous peak to the next one
        length = config.weinberg_k * max(float(segment.max() - segment.min()), 0.0) ** 0.25
        current = current + length * np.array([np.cos(heading[peak]), np.sin(heading[peak])])
        position[peak:] = current
    return position, heading
