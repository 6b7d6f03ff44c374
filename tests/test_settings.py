"""`.env.example` documents every setting and is valid as it is."""

import re
from pathlib import Path

from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_names_every_setting_and_loads() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
    Settings(_env_file=ROOT / ".env.example")  # every example value parses
