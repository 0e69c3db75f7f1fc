"""Behavioural mechanisms: small, pure, vectorized functions the engine composes.

Each module documents what it models, why, its source, its parameters and its neutral
(ablation) setting; ``docs/MODEL.md`` collects them for citation.
"""
