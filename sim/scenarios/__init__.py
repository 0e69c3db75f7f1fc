"""The scenarios that ship with shopgym, as package data, found by name.

``default`` (an online shop), ``cdnow`` (the CDNOW cohort of Fader, Hardie & Lee 2005),
``peak_season`` (capacity binds in the holiday peak) and the other YAML files of this folder
are package data, so a wheel install finds them by name without a repository checkout. A
scenario argument is a name of one of them, or a YAML path (relative to the working
directory). The paths these files had before they moved here, ``configs/scenarios/<name>.yaml``,
still resolve to them.
"""

from __future__ import annotations

from pathlib import Path

#: The folder of the shipped scenario files.
SCENARIO_DIR = Path(__file__).resolve().parent
#: Names of the shipped scenarios.
SHIPPED = tuple(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
_LEGACY_DIR = ("configs", "scenarios")


def scenario_path(scenario: str | Path) -> Path:
    """The YAML file of a shipped scenario's name, or ``scenario`` itself as a path.

    An existing file wins; then a shipped name (``"default"``); then a legacy path
    ``configs/scenarios/<name>.yaml`` of a shipped scenario. Anything else is returned as given,
    so the loader's error names the path.
    """
    path = Path(scenario)
    if path.is_file():
        return path
    if str(scenario) in SHIPPED:
        return SCENARIO_DIR / f"{scenario}.yaml"
    if path.suffix in (".yaml", ".yml") and path.parent.parts[-2:] == _LEGACY_DIR and path.stem in SHIPPED:
        return SCENARIO_DIR / f"{path.stem}.yaml"
    return path
