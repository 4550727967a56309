"""The README is the Space's config and the project's front door: keep it true."""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import SpaceCard

from fhe_backend.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def pinned(name: str) -> str:
    text = (REPO / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(name)}==(\S+)$", text, re.MULTILINE).group(1)


def test_space_front_matter_matches_the_pins():
    card = SpaceCard.load(REPO / "README.md")
    assert card.data.sdk == "gradio"
    assert card.data.sdk_version == pinned("gradio")
    assert card.data.app_file == "app.py" and (REPO / "app.py").is_file()
    assert str(card.data.python_version) == "3.11"
    assert card.data.license == "apache-2.0"
    assert "fhe-audit" in card.data.tags


def test_readme_commands_are_real_cli_commands():
    text = (REPO / "README.md").read_text()
    used = set(re.findall(r"python -m fhe_backend ([a-z-]+)", text))
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)  # argparse has no public API
    assert used and used <= known, used - known
    assert "make run" in text and "make test" in text
