"""Gymnasium environments, registered in one place under ``shopgym/`` when ``sim`` is imported.

String entry points keep the registration cheap: an environment's module is imported only
when it is made. ``gymnasium.make("shopgym/IncentiveTargeting-v0", overrides={...})`` works
from any process that imported ``sim`` (rl-zoo3: ``--gym-packages sim``).
"""

from __future__ import annotations

import gymnasium

_ENVS = {
    "shopgym/ShopperJourney-v0": "sim.envs.journey:ShopperJourneyEnv",
    "shopgym/IncentiveTargeting-v0": "sim.envs.targeting:IncentiveTargetingEnv",
    "shopgym/CampaignPlanning-v0": "sim.envs.campaign:CampaignPlanningEnv",
}

for _env_id, _entry_point in _ENVS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)

ENV_IDS = tuple(_ENVS)
