"""The simulated world: scenarios, shoppers, behaviour, economics, fulfillment, SimPy engine."""
