"""The Export tab's state: which run, checkpoint, format and type; the export process; its result.

An export loads the whole model and can take minutes, so it never runs in the Panel server:
``start()`` launches ``python -m gemma_panel export RUN --format F --out DIR ...`` (the CLI's
own command, so the tab and the terminal make the same export) and a thread reads its output
lines. ``poll()``, called from the app's periodic callback on the page's thread, shows the
lines and, once the process has ended, reads the export's ``manifest.json``: its checks
become the verification table (each check, its measured value and its bound).

Example:
    >>> m = ExportModel(RunStore())
    >>> m.param.update(run="tiny-3f2a1b", checkpoint="latest", fmt="gguf", quantize="q8_0")
    >>> m.command()[3:]     # ['export', '/…/runs/tiny-3f2a1b', '--format', 'gguf', ...]
    >>> m.start()           # then m.poll() until m.busy is False; m.checks, m.manifest
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import param

from gemma_panel.errors import UserError
from gemma_panel.export.expected import expect_export
from gemma_panel.export.inventory import Checkpoints, run_checkpoints, run_exports
from gemma_panel.export.manifest import is_finished, read_manifest
from gemma_panel.export.pipeline import DEFAULT_GGUF_TYPE, FORMATS, default_folder_name
from gemma_panel.runs import RunStore

from .downloads import export_links
from .outputs import write, writing

EXPORTABLE = ("succeeded", "cancelled")
KERAS_TYPES = ("none", "int8", "int4")
MAX_LINES = 200
# Which keys of a check (see export/verify.py) hold what it measured and what bounds it.
MEASURED_KEYS = ("max_abs_diff", "margin", "worst_ratio", "ratio", "change", "bytes")
BOUND_KEYS = ("tolerance", "bound")


def quantize_choices(fmt: str) -> list[str]:
    """The types ``fmt`` takes: GGUF's file types (those llama-quantize makes only where it
    is installed), Keras's int8/int4, else none."""
    if fmt == "gguf":
        import shutil

        from gemma_panel.export.gguf import GGUF_TYPES, LLAMA_QUANTIZE_TYPES
        return [t for t in GGUF_TYPES
                if t not in LLAMA_QUANTIZE_TYPES or shutil.which("llama-quantize")]
    if fmt == "litert":
        from gemma_panel.export.litert import LITERT_TYPES
        return list(LITERT_TYPES)
    return list(KERAS_TYPES) if fmt == "keras" else ["none"]


def check_rows(manifest: dict) -> list[dict]:
    """The verification table: one row per check of the manifest."""
    rows = []
    for check in manifest.get("verification", {}).get("checks", []):
        measured = next((check[k] for k in MEASURED_KEYS if k in check), None)
        bound = next((check[k] for k in BOUND_KEYS if k in check), None)
        result = "measured" if check.get("measured") else (
            "passed" if check.get("passed") else "FAILED")
        rows.append({"check": check["name"], "result": result,
                     "measured": _number(measured), "bound": _number(bound),
                     "detail": check.get("detail", "")})
    return rows


def _number(value):
    return float(f"{value:.4g}") if isinstance(value, float) else value


class _Process:
    """A child process whose output lines a thread collects (the page reads them later)."""

    def __init__(self, command: list[str]):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True)
        self.lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def done(self) -> bool:
        return self.proc.poll() is not None and not self._reader.is_alive()


class ExportModel(param.Parameterized):
    """One run's exports: what to export next, the export under way, and those made."""

    run = param.Selector(default=None, objects=[], allow_None=True,
                         doc="A succeeded or cancelled run with a checkpoint.")
    checkpoint = param.Selector(default="latest", objects=["latest"],
                                doc="latest, best, or 'step N'.")
    fmt = param.Selector(default="gguf", objects=list(FORMATS), label="Format")
    quantize = param.Selector(default=DEFAULT_GGUF_TYPE, objects=quantize_choices("gguf"),
                              label="Quantization")
    replace = param.Boolean(default=False, label="Replace an existing export of this kind")
    shown = param.Selector(default=None, objects=[], allow_None=True,
                           doc="The export whose checks and manifest are shown.")
    # Outputs: read-only outside the model (see outputs.py).
    busy = param.Boolean(default=False, constant=True)
    status = param.String(default="", constant=True)
    expected = param.String(default="", constant=True,
                            doc="The export's expected size and time, and their basis.")
    log = param.String(default="", constant=True, doc="The export process's output lines.")
    exports = param.List(default=[], constant=True, doc="The run's exports, newest first.")
    checks = param.List(default=[], constant=True, doc="The shown export's verification.")
    manifest = param.Dict(default={}, constant=True, doc="The shown export's manifest.")
    readme = param.String(default="", constant=True, doc="The shown export's README.")
    downloads = param.List(default=[], constant=True,
                           doc="(label, url) of the shown export's files and its zip.")

    def __init__(self, store: RunStore | None = None, **params):
        super().__init__(**params)
        self.store = store or RunStore()
        self._process: _Process | None = None
        self._target: Path | None = None
        self._stopped = False
        self.refresh_runs()
        self._expect()

    # -- choices ---------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Offer the runs an export can start from (newest first); keep the current one."""
        ids = [r.id for r in self.store.list_runs() if r.status in EXPORTABLE
               and (self.store.folder(r.id).has_checkpoint() or r.remote_dir)]
        self.param.run.objects = ids
        if self.run not in ids:
            self.run = ids[0] if ids else None
        else:
            self._run_changed()

    @param.depends("run", watch=True)
    def _run_changed(self) -> None:
        choices = self._checkpoints().choices()
        self.param.checkpoint.objects = choices
        if self.checkpoint not in choices:
            self.checkpoint = "latest"
        self._list_exports()

    @param.depends("fmt", watch=True)
    def _fmt_changed(self) -> None:
        choices = quantize_choices(self.fmt)
        self.param.quantize.objects = choices
        if self.quantize not in choices:
            self.quantize = DEFAULT_GGUF_TYPE if self.fmt == "gguf" else choices[0]

    def _run_dir(self) -> Path | None:
        return None if self.run is None else Path(self.store.get(self.run).run_dir)

    def _checkpoints(self) -> Checkpoints:
        run_dir = self._run_dir()
        return Checkpoints() if run_dir is None else run_checkpoints(run_dir)

    def step(self) -> int | None:
        """The checkpoint step the choice names (None: the run has none)."""
        return self._checkpoints().step(self.checkpoint)

    @param.depends("run", "fmt", "quantize", watch=True)
    def _expect(self) -> None:
        """Say the expected size and time of the export as chosen (export/expected.py)."""
        text = ""
        if self.run is not None:
            from gemma_panel.config import RecipeError, load_recipe

            try:
                recipe = load_recipe(self.store.folder(self.run).recipe_path)
                text = expect_export(recipe, self.fmt, self.quantize,
                                     self.store.runs_root).text()
            except (OSError, RecipeError, UserError) as exc:
                text = f"Expected size and time: unknown ({exc})."
        write(self, expected=text)

    # -- the export process ----------------------------------------------------------------
    def out_folder(self) -> Path:
        quantize = None if self.quantize == "none" else self.quantize
        return self._run_dir() / "exports" / default_folder_name(self.fmt, quantize, self.step())

    def command(self) -> list[str]:
        """The CLI command the export runs (the same as typing it in a terminal)."""
        command = [sys.executable, "-m", "gemma_panel", "export", str(self._run_dir()),
                   "--format", self.fmt, "--step", str(self.step()),
                   "--out", str(self.out_folder())]
        if self.quantize != "none":
            command += ["--quantize", self.quantize]
        return command + (["--force"] if self.replace else [])

    def start(self) -> None:
        if self.busy:
            return
        if self.run is None or self.step() is None:
            write(self, status="Pick a run with a checkpoint first (a succeeded or cancelled "
                               "run; train one in the Train tab).")
            return
        command = self.command()
        self._target = self.out_folder()
        self._process, self._stopped = _Process(command), False
        write(self, busy=True, log="$ " + " ".join(command[1:]),
              status=f"Exporting {self.run} step {self.step()} to {self.fmt} ...")

    def stop(self) -> None:
        """Interrupt the export: as Ctrl-C would, so its partial folder is removed."""
        if self._process is not None and self._process.proc.poll() is None:
            self._stopped = True
            self._process.proc.send_signal(signal.SIGINT)

    def poll(self) -> None:
        """Show new output lines; once the process ended, its verdict and the export."""
        process = self._process
        if process is None:
            return
        log = "\n".join([self.log.split("\n", 1)[0], *process.lines])
        if not process.done():
            if log != self.log:
                write(self, log=log)
            return
        self._process, code = None, process.proc.returncode
        if code == 0 and is_finished(self._target):
            status = f"Exported and verified: {self._target.name}."
        elif self._stopped:
            status = "Stopped; nothing was kept. Export again when you are ready."
        elif code == 1:
            status = "The export was written but a check failed, so nothing was kept; see below."
        else:
            status = f"The export did not run (exit status {code}); see its output below."
        write(self, busy=False, log=log, status=status)
        self._list_exports(show=self._target.name if code == 0 else None)
        self._expect()  # the rate now includes this export's measured time

    # -- the run's exports -----------------------------------------------------------------
    def _list_exports(self, show: str | None = None) -> None:
        run_dir = self._run_dir()
        rows = [e.row() for e in run_exports(run_dir)] if run_dir is not None else []
        names = [r["export"] for r in rows]
        self.param.shown.objects = names
        with writing(self):
            self.exports = rows
        shown = show if show in names else (self.shown if self.shown in names else
                                            (names[0] if names else None))
        if shown != self.shown:
            self.shown = shown
        else:
            self._show()

    @param.depends("shown", watch=True)
    def _show(self) -> None:
        folder = None if self.shown is None else self._run_dir() / "exports" / self.shown
        manifest = read_manifest(folder) if folder is not None else {}
        readme = folder / "README.md" if folder is not None else None
        links = []
        if folder is not None:
            from gemma_panel.runs.mirror import remote_export

            links = export_links(self.store.runs_root, folder, manifest,
                                 remote_export(self.store.get(self.run), folder.name))
        with writing(self):
            self.manifest, self.checks = manifest, check_rows(manifest)
            self.readme = readme.read_text() if readme is not None and readme.is_file() else ""
            self.downloads = links
