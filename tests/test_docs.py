"""The README documents every setting and every command (as datasette's test_docs does)."""

from __future__ import annotations

import click

from command.cli import main
from command.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"RALLYPOINT_{name.upper()}" in README, name


def test_every_command_is_documented() -> None:
    def walk(group: click.Group, prefix: str) -> list[str]:
        names = []
        for name, command in group.commands.items():
            full = f"{prefix} {name}"
            if isinstance(command, click.Group):
                names.extend(walk(command, full))
            else:
                names.append(full)
        return names

    for command in walk(main, "rallypoint"):
        assert command in README, command


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:1500]
    assert "make run" in head and "make test" in head
