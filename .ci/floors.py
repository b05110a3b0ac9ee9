"""Print every requirement of pyproject.toml's dependencies and the named extras pinned to its
lower bound (``numpy>=1.24`` -> ``numpy==1.24``), as a pip constraints file: CI installs those and
runs the suite, so the versions pyproject.toml promises to work with are the ones tested.
(Python 3.11 or later: it reads the file with tomllib.)"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
pins = {}
for req in requirements:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", req.strip())
    if m is None:
        sys.exit(f"floors.py: {req!r} has no plain lower bound to pin")
    name = m.group(1).lower().replace("_", "-")
    if pins.setdefault(name, m.group(2)) != m.group(2):
        sys.exit(f"floors.py: {name} has two lower bounds ({pins[name]}, {m.group(2)})")
print("\n".join(f"{name}=={version}" for name, version in sorted(pins.items())))
