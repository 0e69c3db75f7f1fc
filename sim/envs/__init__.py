"""Gymnasium environments, registered in one place under ``shopgym/`` when ``sim`` is imported.

String entry points keep the registration cheap: an environment's module is imported only
when it is made. ``gymnasium.make("shopgym/IncentiveTargeting-v0", overrides={...})`` works
from any process that imported ``sim`` (rl-zoo3: ``--gym-packages sim``). A process that has
not (a Ray worker, a CLI taking an id) can use ``"sim:shopgym/IncentiveTargeting-v0"``:
gymnasium imports the module before the id is looked up.

``shopgym/mo-<Name>-v0`` are the multi-objective views (:mod:`sim.envs.mo`): the reward is the
objective vector, with a ``reward_space``, as MO-Gymnasium expects. Make them with
``mo_gymnasium.make`` (or ``gymnasium.make(..., disable_env_checker=True)``: gymnasium's
checker expects a scalar reward).

ShopperJourney-v0 has a native vector env (:mod:`sim.envs.journey_vector`): ``gym.make_vec``
with ``vectorization_mode="vector_entry_point"`` returns one ``VectorEnv`` over N journeys.
"""

from __future__ import annotations

import gymnasium

_ENVS = {
    "shopgym/ShopperJourney-v0": "sim.envs.journey:ShopperJourneyEnv",
    "shopgym/IncentiveTargeting-v0": "sim.envs.targeting:IncentiveTargetingEnv",
    "shopgym/CampaignPlanning-v0": "sim.envs.campaign:CampaignPlanningEnv",
}

#: Multi-objective views (MO-Gymnasium's convention): the reward is the objective vector.
_MO_ENVS = {
    "shopgym/mo-ShopperJourney-v0": "sim.envs.mo:MOShopperJourneyEnv",
    "shopgym/mo-IncentiveTargeting-v0": "sim.envs.mo:MOIncentiveTargetingEnv",
    "shopgym/mo-CampaignPlanning-v0": "sim.envs.mo:MOCampaignPlanningEnv",
}

#: Native vector envs (``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``).
_VECTOR_ENTRY_POINTS = {
    "shopgym/ShopperJourney-v0": "sim.envs.journey_vector:ShopperJourneyVectorEnv",
}

for _env_id, _entry_point in {**_ENVS, **_MO_ENVS}.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id, entry_point=_entry_point, vector_entry_point=_VECTOR_ENTRY_POINTS.get(_env_id)
        )

ENV_IDS = tuple(_ENVS)
MO_ENV_IDS = tuple(_MO_ENVS)
