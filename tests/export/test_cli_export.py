"""``gemma-panel export``: exit codes, messages, what it prints."""

from __future__ import annotations

import argparse
import json

import pytest

from gemma_panel.cli import run_command
from gemma_panel.cli.export import add_export_commands
from gemma_panel.export import check_files
from gemma_panel.models.lora import LORA_FILE


def run_cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="gemma-panel")
    add_export_commands(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(argv))  # with the CLI's error boundary


def test_export_gguf_prints_files_and_checks(tiny_run, tmp_path, capsys):
    _, run_dir, _ = tiny_run
    out = tmp_path / "cli-gguf"
    assert run_cli(["export", str(run_dir), "--format", "gguf", "-q", "q8_0",
                    "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model.gguf" in printed and "Modelfile" in printed
    assert "[ok] gguf_dequantized_within_bound" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantize"] == "q8_0" and manifest["verification"]["passed"]


@pytest.mark.parametrize("argv, words", [
    (["--format", "hf", "--no-merge"], "need the LoRA merged"),
    (["--format", "lora", "--step", "99"], "no checkpoint at step 99"),
    (["--format", "keras", "-q", "q4_0"], "--format gguf"),
])
def test_wrong_requests_exit_2_with_words(tiny_run, capsys, argv, words):
    _, run_dir, _ = tiny_run
    assert run_cli(["export", str(run_dir), *argv]) == 2
    assert words in capsys.readouterr().err


def test_unknown_run_exits_2(capsys):
    assert run_cli(["export", "no-such-run", "--format", "hf"]) == 2
    assert "no run with id 'no-such-run'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_force_refuses_what_is_not_an_export_and_leaves_it(tiny_run, tmp_path, capsys, kind):
    _, run_dir, _ = tiny_run
    out = tmp_path / "mine"
    if kind == "folder":
        out.mkdir()
        (out / "notes.txt").write_text("the user's notes")
    else:
        out.write_text("the user's notes")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli(["export", str(run_dir), "--format", "lora", "--out", str(out),
                    "--force"]) == 2
    err = capsys.readouterr().err
    assert "is not an export folder" in err or "has no manifest.json" in err
    assert "choose another --out" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    kept = out / "notes.txt" if kind == "folder" else out
    assert kept.read_text() == "the user's notes"


def test_force_replaces_a_finished_export(tiny_run, tmp_path, capsys):
    _, run_dir, _ = tiny_run
    out = tmp_path / "lora"
    assert run_cli(["export", str(run_dir), "--format", "lora", "--out", str(out)]) == 0
    (out / LORA_FILE).write_bytes(b"stale")  # a listed file, damaged
    assert run_cli(["export", str(run_dir), "--format", "lora", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert run_cli(["export", str(run_dir), "--format", "lora", "--out", str(out),
                    "--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["verification"]["passed"]
    assert check_files(out) == []  # the damaged file was replaced with the new export's
    assert [p.name for p in tmp_path.iterdir()] == ["lora"]
