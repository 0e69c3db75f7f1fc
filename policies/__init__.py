"""Who decides: incentive policies behind one ``predict`` protocol (baselines, bandits, SB3 RL)."""
