"""Small, fast settings of every shopgym env for client tests: episodes end within a few steps."""

from __future__ import annotations

from typing import Any

#: Constructor arguments per env id: many episode ends (autoresets) in a few hundred steps.
TINY: dict[str, dict[str, Any]] = {
    "shopgym/ShopperJourney-v0": {"horizon_days": 90},
    "shopgym/IncentiveTargeting-v0": {
        "overrides": {"population.shoppers": 20, "population.acquisition_days": 2.0},
        "horizon_days": 4,
    },
    "shopgym/CampaignPlanning-v0": {"overrides": {"population.shoppers": 50}, "horizon_days": 5},
}
TINY.update({k.replace("shopgym/", "shopgym/mo-"): v for k, v in list(TINY.items())})
