"""The `rallypoint` command line, against a fresh SQLite database."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
from click.testing import CliRunner

from command.cli import main
from tests.conftest import DEMO_SITE, OSM_EXTRACT

COMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["site"],
    ["site", "load"],
    ["site", "list"],
    ["layer"],
    ["layer", "import"],
    ["layer", "export"],
    ["fixtures"],
    ["fixtures", "generate"],
    ["osm"],
    ["osm", "import"],
]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_every_command_explains_itself(cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    # Each command's help has a sentence of its own, not just the usage line.
    assert len(result.output.splitlines()) > 3


def test_load_twice_does_not_duplicate(cli: CliRunner) -> None:
    assert cli.invoke(main, ["db", "upgrade"]).exit_code == 0
    first = cli.invoke(main, ["site", "load", str(DEMO_SITE), "--if-exists", "skip"])
    assert first.exit_code == 0 and "loaded site demo-works" in first.output
    second = cli.invoke(main, ["site", "load", str(DEMO_SITE), "--if-exists", "skip"])
    assert second.exit_code == 0 and "already loaded" in second.output
    refused = cli.invoke(main, ["site", "load", str(DEMO_SITE)])
    assert refused.exit_code == 1 and "exists already" in refused.output
    listing = cli.invoke(main, ["site", "list"]).output
    assert "zones=48" in listing and "people=430" in listing


def test_commands_refuse_an_unmigrated_database(cli: CliRunner) -> None:
    result = cli.invoke(main, ["site", "list"])
    assert result.exit_code != 0 and "rallypoint db upgrade" in result.output


def test_layer_export_edit_import(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["db", "upgrade"])
    cli.invoke(main, ["site", "load", str(DEMO_SITE)])
    out = tmp_path / "zones.gpkg"
    exported = cli.invoke(main, ["layer", "export", "demo-works", "zones", str(out)])
    assert exported.exit_code == 0 and out.stat().st_size > 0
    unchanged = cli.invoke(main, ["layer", "import", "demo-works", "zones", str(out)])
    assert unchanged.exit_code == 0 and "48 unchanged" in unchanged.output
    frame = pyogrio.read_dataframe(out)  # a planner's edit, as QGIS would save it
    frame.loc[frame["id"] == "Z-002", "capacity"] = 12
    pyogrio.write_dataframe(frame, out, driver="GPKG", layer="zones")
    edited = cli.invoke(main, ["layer", "import", "demo-works", "zones", str(out)])
    assert edited.exit_code == 0 and "1 updated, 47 unchanged" in edited.output
    bad = tmp_path / "bad.geojson"
    bad.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", '
        '"geometry": null, "properties": {"name": "X", "kind": "office"}}]}'
    )
    refused = cli.invoke(main, ["layer", "import", "demo-works", "zones", str(bad)])
    assert refused.exit_code == 1
    assert "row 1: geometry: geometry is required" in refused.output


def test_fixtures_generate_and_osm_import(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["db", "upgrade"])
    out = tmp_path / "synthetic"
    made = cli.invoke(main, ["fixtures", "generate", str(out), "--people", "50", "--edges", "2000"])
    assert made.exit_code == 0 and (out / "site.json").is_file()
    loaded = cli.invoke(main, ["site", "load", str(out)])
    assert loaded.exit_code == 0 and "people 50" in loaded.output
    osm = cli.invoke(
        main, ["osm", "import", str(OSM_EXTRACT), "--site", "oakland", "--create-site", "Oakland"]
    )
    assert osm.exit_code == 0, osm.output
    assert "connected part(s)" in osm.output
