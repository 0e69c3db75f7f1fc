"""shopgym: the installable name. Importing it registers the Gymnasium environments.

``import shopgym`` (or the id prefix ``"shopgym:shopgym/ShopperJourney-v0"``, rl-zoo3's
``--gym-packages shopgym``, CleanRL's ``--env-id shopgym:shopgym/...``) makes the ``shopgym/``
ids known to ``gymnasium.make``; ``shopgym.register_policy`` adds your own policy kinds. The code
lives in :mod:`sim`, :mod:`policies` and :mod:`experiments`.
"""

from __future__ import annotations

from importlib import metadata

from policies.plugins import register_policy
from sim.envs import ENV_IDS, MO_ENV_IDS

try:
    __version__ = metadata.version("shopgym")
except metadata.PackageNotFoundError:  # a source checkout on the path, not installed
    __version__ = "0+unknown"

__all__ = ["ENV_IDS", "MO_ENV_IDS", "__version__", "register_policy"]
