"""``gemma-panel export``: exit codes, messages, what it prints."""

from __future__ import annotations

import argparse
import json

import pytest

from gemma_panel.cli import run_command
from gemma_panel.cli_export import add_export_commands


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
