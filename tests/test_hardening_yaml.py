"""Issue 12: hostile YAML (not UTF-8, deep, alias bombs, huge sections) is refused fast, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.cli import main
from experiments.config import ConfigError, load_config
from sim.params import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _bomb(levels: int = 10, width: int = 10) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


CASES = {
    "not_utf8": (b"name: caf\xe9\n", "UTF-8"),
    "deep_flow": (b"name: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested deeper than 40 levels"),
    "deep_block": (
        "".join(f"{' ' * (2 * i)}k{i}:\n" for i in range(200)).encode() + b"x\n",
        "nested deeper than 40 levels",
    ),
    "alias_bomb": (_bomb().encode(), "alias"),  # 10^10 values once expanded
    "python_tag": (b"name: !!python/object/apply:os.system ['touch pwned']\n", "YAML"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_scenario_yaml_is_refused_before_expansion_in_one_line(tmp_path: Path, case: str):
    # No wall-clock assertion (timings belong in benchmarks): the alias bomb expands to 10^10
    # values, so a loader that built it would exhaust memory instead of returning this error.
    content, needle = CASES[case]
    path = tmp_path / "scenario.yaml"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert needle in message and "\n" not in message and len(message) < 600
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_experiment_yaml_exits_2_with_one_line(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
):
    content, _ = CASES[case]
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cross_field_messages_are_capped(tmp_path: Path):
    """The original failure: a validator printed whole sections (5-19 MB messages)."""
    names = "".join(
        "  - {name: c, share: 0.00001, cogs_ratio: 0.5, return_rate: 0.1}\n" for _ in range(20000)
    )
    base = (ROOT / "sim" / "scenarios" / "default.yaml").read_text()
    data = base.replace("catalog:", "catalog_unused:", 1) + f"catalog:\n categories:\n{names}"
    path = tmp_path / "big.yaml"
    path.write_text(data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert len(str(info.value)) <= 4000


def test_experiment_config_with_unknown_huge_key_is_capped(tmp_path: Path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nbogus: [" + ", ".join(["1"] * 100_000) + "]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "bogus" in str(info.value) and len(str(info.value)) <= 4000
