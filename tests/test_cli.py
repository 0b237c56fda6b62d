"""The ``libragen`` command: world subcommands work, errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from libragen.cli import app
from libragen.world.manifest import read_manifest

runner = CliRunner()


def test_world_make_writes_manifest_and_prints_its_path(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["world", "make", "--n", "6", "--out", str(tmp_path), "--defects", "0.5", "--workers", "1", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "manifest.parquet") in result.stdout
    rows = read_manifest(tmp_path)
    assert len(rows) == 6 and sum(r["defect"] is not None for r in rows) == 3
    assert (tmp_path / "world.yaml").is_file()


def test_world_make_reads_a_yaml_config(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text("width: 32\nheight: 32\nframes: 8\n")
    result = runner.invoke(
        app, ["world", "make", "--n", "2", "--out", str(tmp_path / "w"), "--config", str(config), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert {(r["width"], r["num_frames"]) for r in read_manifest(tmp_path / "w")} == {(32, 8)}


def test_world_portrait_and_info(tmp_path: Path) -> None:
    png = tmp_path / "ref.png"
    result = runner.invoke(app, ["world", "portrait", "777", "--out", str(png), "--size", "96"])
    assert result.exit_code == 0, result.output
    assert Image.open(png).size == (96, 96)
    runner.invoke(app, ["world", "make", "--n", "4", "--out", str(tmp_path / "w"), "--workers", "1"])
    info = runner.invoke(app, ["world", "info", str(tmp_path / "w")])
    assert info.exit_code == 0 and "4 clips" in info.stdout


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("width: 33\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "libragen",
            "world",
            "make",
            "--n",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "width" in proc.stderr and "even" in proc.stderr
    assert "Traceback" not in proc.stderr
