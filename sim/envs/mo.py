"""Multi-objective views of the shopgym environments, in MO-Gymnasium's convention.

Each ``shopgym/mo-<Name>-v0`` is ``shopgym/<Name>-v0`` whose reward is the step's objective
vector instead of its weighted sum, so researchers can study Pareto fronts of margin, LTV,
fulfillment load and incentive spend (e.g. with MO-Gymnasium's wrappers and
``morl-baselines``), rather than fixing ``objective_weights`` up front.

The vector is ``MO_SIGNS * step_objective() * reward_scale``: margin and LTV as they are, load
(late deliveries, overtime orders) and budget (incentive dollars) negated, so that more is
better in every component, as MO-Gymnasium's Pareto utilities assume. The scalar env's reward
is then ``(objective_weights * MO_SIGNS) @ vector``. ``reward_space`` is a ``Box`` of shape
``(4,)``, float32, and ``reward_dim`` is 4.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from sim.envs.campaign import CampaignPlanningEnv
from sim.envs.common import OBJECTIVES
from sim.envs.journey import ShopperJourneyEnv
from sim.envs.targeting import IncentiveTargetingEnv

#: +1 for objectives to raise (margin, LTV), -1 for costs to lower (load, budget), in ``OBJECTIVES`` order.
MO_SIGNS = np.array([1.0, 1.0, -1.0, -1.0])
#: The names of the vector's components, in order.
MO_OBJECTIVES = ("margin", "ltv", "-load", "-budget")


def _reward_space() -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (len(OBJECTIVES),), np.float32)


def _vector(objective: NDArray[np.float64], reward_scale: float) -> NDArray[np.float32]:
    return (MO_SIGNS * objective * reward_scale).astype(np.float32)


class MOShopperJourneyEnv(ShopperJourneyEnv):
    """``ShopperJourney-v0`` rewarded with the objective vector (see :mod:`sim.envs.mo`).

    Arguments, observations, actions, info and episode ends are those of ShopperJourney-v0.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reward_space = _reward_space()
        self.reward_dim = len(OBJECTIVES)

    def step(  # type: ignore[override]
        self, action: np.int64 | int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], bool, bool, dict[str, Any]]:
        """ShopperJourney's step, with the objective vector as the reward."""
        obs, _, terminated, truncated, info = super().step(action)
        return obs, _vector(self.step_objective(), self.reward_scale), terminated, truncated, info


class MOIncentiveTargetingEnv(IncentiveTargetingEnv):
    """``IncentiveTargeting-v0`` rewarded with the attributed objective vector (see :mod:`sim.envs.mo`).

    Arguments, observations, actions, info and episode ends are those of IncentiveTargeting-v0.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reward_space = _reward_space()
        self.reward_dim = len(OBJECTIVES)

    def step(  # type: ignore[override]
        self, action: np.int64 | int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], bool, bool, dict[str, Any]]:
        """IncentiveTargeting's step, with the attributed objective vector as the reward."""
        obs, _, terminated, truncated, info = super().step(action)
        return obs, _vector(self.step_objective(), self.reward_scale), terminated, truncated, info


class MOCampaignPlanningEnv(CampaignPlanningEnv):
    """``CampaignPlanning-v0`` rewarded with the day's objective vector (see :mod:`sim.envs.mo`).

    Arguments, observations, actions, info and episode ends are those of CampaignPlanning-v0.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reward_space = _reward_space()
        self.reward_dim = len(OBJECTIVES)

    def step(  # type: ignore[override]
        self, action: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], bool, bool, dict[str, Any]]:
        """CampaignPlanning's step, with the day's objective vector as the reward."""
        obs, _, terminated, truncated, info = super().step(action)
        return obs, _vector(self.step_objective(), self.reward_scale), terminated, truncated, info
