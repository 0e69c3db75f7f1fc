"""Learning curves from SB3 training: each finished training episode's return and business metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

#: Business metrics kept on the learning curve, when the environment reports them.
CURVE_METRICS = ("ltv_mean", "margin", "incentive_cost", "late_delivery_share")


class LearningCurve(BaseCallback):
    """Record (timestep, return, metrics) of every finished training episode; report progress."""

    def __init__(self, total_timesteps: int, progress: Callable[[float], None] | None = None) -> None:
        super().__init__()
        self.total = max(total_timesteps, 1)
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self._reported = 0.0

    def _on_step(self) -> bool:
        dones = self.locals.get("dones", ())
        for info, done in zip(self.locals.get("infos", ()), dones, strict=False):
            metrics = info.get("episode_metrics")
            if done and metrics is not None:  # the envs report zeros until the episode ends
                row = {"x": self.num_timesteps, "x_unit": "timesteps", "return": float(metrics["r"])}
                row.update({k: float(metrics[k]) for k in CURVE_METRICS if k in metrics})
                self.rows.append(row)
        fraction = min(self.num_timesteps / self.total, 1.0)
        if self.progress is not None and fraction - self._reported >= 0.01:
            self._reported = fraction
            self.progress(fraction)
        return True
