"""``shopgym leaderboard``: shipped configs for every env, scaling, and the page it writes."""

from __future__ import annotations

from pathlib import Path

import yaml

from experiments.config import load_config
from experiments.leaderboard import CONFIGS, run_leaderboard, scaled
from policies.registry import BUILTIN_KINDS

TINY = {
    "name": "lb_tiny",
    "env": {
        "id": "shopgym/ShopperJourney-v0",
        "scenario": "configs/scenarios/default.yaml",
        "kwargs": {"horizon_days": 120},
    },
    "objective_weights": {"margin": 1.0},
    "seeds": [0, 1],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "oracle", "kind": "oracle"},
        {"name": "segment_rules", "kind": "segment_rules"},
        {"name": "thompson", "kind": "thompson", "kwargs": {"likelihood": "gaussian"}},
    ],
    "training": {"episodes": 2},
    "evaluation": {"episodes": 3},
    "reference": "none",
}


def test_shipped_leaderboard_configs_cover_every_env_default_scenario_and_every_kind():
    configs = [load_config(path, check=False) for path in CONFIGS]
    assert {c.env.id for c in configs} == {
        "shopgym/ShopperJourney-v0",
        "shopgym/IncentiveTargeting-v0",
        "shopgym/CampaignPlanning-v0",
    }
    assert all(c.env.scenario == "configs/scenarios/default.yaml" for c in configs)
    journey = next(c for c in configs if c.env.id == "shopgym/ShopperJourney-v0")
    # Every kind on the journey, but the planning oracle, which plans a whole shop's campaign.
    assert {p.kind for p in journey.policies} == set(BUILTIN_KINDS) - {"oracle_plan"}
    campaign = next(c for c in configs if c.env.id == "shopgym/CampaignPlanning-v0")
    assert "oracle_plan" in {p.kind for p in campaign.policies}


def test_scaling_keeps_the_first_seeds_and_shrinks_budgets():
    config = load_config(CONFIGS[1], check=False)
    small = scaled(config, 2, 0.1, 500)
    assert small.seeds == config.seeds[:2]
    assert small.evaluation.episodes == 1 and small.training.timesteps == config.training.timesteps // 10
    assert small.env.overrides["population.shoppers"] == 500


def test_the_page_scores_margin_ltv_and_return_with_cis_and_names_its_command(tmp_path: Path):
    path = tmp_path / "lb.yaml"
    path.write_text(yaml.safe_dump(TINY))
    page = run_leaderboard(
        [str(path)], tmp_path / "LEADERBOARD.md", tmp_path / "runs", None, 1.0, None, "cmd x"
    )
    text = page.read_text()
    assert "## `shopgym/ShopperJourney-v0`" in text and "| policy | margin | LTV | return |" in text
    assert "| oracle | 1.00 ± 0.00 | 1.00 ± 0.00 | 1.00 ± 0.00 |" in text
    assert "| none | 0.00 ± 0.00 |" in text and "| thompson | " in text
    assert "```bash\ncmd x\n```" in text and "Full size" in text
