"""The production loop in one script: train, export, serve, log through HTTP, evaluate off-policy, compare.

Run from the repository root: ``python examples/production_loop.py --out runs/loop`` (about
ten minutes on one core with the defaults; ``--shoppers 1000 --days 60 --timesteps 2048`` for
a one-minute version). See README "From policy to production".
"""

from experiments.production_loop import main

if __name__ == "__main__":
    main()
