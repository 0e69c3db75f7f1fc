"""The simulated world: scenarios, shoppers, behaviour, economics, fulfillment, SimPy engine.

Importing ``sim`` registers the Gymnasium environments (``sim.envs``).
"""

from sim import envs as envs
