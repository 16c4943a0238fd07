"""The ``%nnmodes`` line magic: attach a monitor, show its dashboard, report, detach.

Names are looked up in the user's namespace (``a.b`` walks attributes); nothing the user types is
ever evaluated. Every mistake is a one-line UsageError.
"""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

from ..live.monitor import Monitor

USAGE = ("%nnmodes watch MODEL [OPTIMIZER] [--every N] [--budget F] [--probe X [Y]]"
         " [--run PATH | --no-run] | %nnmodes open PATH | %nnmodes export PATH"
         " | %nnmodes status | %nnmodes detach")

_SUBCOMMANDS = ("watch", "open", "export", "status", "detach")


@magics_class
class NnmodesMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.monitors: list[Monitor] = []   # every monitor made here, the current one last
        self.dashboards = {}                # monitor -> its dashboard

    @line_magic
    def nnmodes(self, line: str):
        """Watch a model while it trains: ``%nnmodes watch model optimizer --every 10``.

        ``%nnmodes export PATH`` writes the current dashboard (the newest monitor's, also after
        it was detached) to a .png, .svg or .pdf file."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%nnmodes: cannot parse the line ({exc}). Usage: {USAGE}") from None
        if not words or words[0] not in _SUBCOMMANDS:
            given = f"unknown subcommand {words[0]!r}" if words else "no subcommand"
            raise UsageError(f"%nnmodes: {given}. Usage: {USAGE}")
        command, args = words[0], words[1:]
        if command == "watch":
            return self._watch(args)
        if command == "export":
            return self._export(args)
        if command == "open":
            return self._open(args)
        if args:
            raise UsageError(f"%nnmodes {command} takes no arguments, got {' '.join(args)!r}")
        if command == "status":
            return self._status()
        return self._detach()

    def _watch(self, args: list[str]) -> Monitor:
        names, options = _split_options(args, {"--every": 1, "--budget": 1, "--probe": (1, 2),
                                               "--run": 1, "--no-run": 0})
        if not 1 <= len(names) <= 2:
            raise UsageError(f"%nnmodes watch takes MODEL [OPTIMIZER], got {len(names)} names. Usage: {USAGE}")
        model = self._lookup(names[0])
        optimizer = self._lookup(names[1]) if len(names) == 2 else None
        kwargs = {}
        if "--every" in options:
            kwargs["every"] = _number(options["--every"][0], int, "--every")
        if "--budget" in options:
            kwargs["budget"] = _number(options["--budget"][0], float, "--budget")
        if "--probe" in options:
            probe = [self._lookup(n) for n in options["--probe"]]
            kwargs["probe"] = probe[0] if len(probe) == 1 else tuple(probe)
        if "--run" in options and "--no-run" in options:
            raise UsageError("%nnmodes watch: --run PATH and --no-run exclude each other")
        if "--run" in options:
            kwargs["run"] = options["--run"][0]
        if "--no-run" in options:
            kwargs["run"] = False
        try:
            monitor = Monitor(model, optimizer, **kwargs)    # replaces the loop's old one
        except (TypeError, ValueError) as exc:
            raise UsageError(f"%nnmodes watch: {exc}") from None
        self._drop_replaced()
        self.monitors.append(monitor)
        dashboard = monitor.dashboard()
        self.dashboards[monitor] = dashboard
        display(dashboard)
        return monitor   # `monitor = %nnmodes watch ...` keeps a handle on it

    def _open(self, args: list[str]):
        """``%nnmodes open PATH``: show a recorded run's dashboard (following it while another
        process still writes it); returns the run."""
        from ..runs.run_reader import open_run

        if len(args) != 1:
            raise UsageError(f"%nnmodes open takes one PATH (a .nnmodes run file). Usage: {USAGE}")
        try:
            run = open_run(args[0])
        except ValueError as exc:
            raise UsageError(f"%nnmodes open: {exc}") from None
        display(run.dashboard())
        return run

    def _status(self) -> None:
        monitor = self._require_current()
        print(f"{type(monitor.model).__name__}: {monitor.summary()}")
        findings = monitor.findings
        if findings:
            print(f"findings ({len(findings)}, newest first):")
        for finding in reversed(findings):
            until = "" if finding.ended is None else f" (until step {finding.ended:,})"
            print(f"  {finding.severity:7s} {finding.message}{until}")

    def _export(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError(f"%nnmodes export takes one PATH (.png, .svg or .pdf). Usage: {USAGE}")
        monitor = self._require_current(attached=False)
        try:
            path = self.dashboards[monitor].export(args[0])
        except (ValueError, OSError) as exc:
            raise UsageError(f"%nnmodes export: {exc}") from None
        print(f"exported the dashboard at step {monitor.current_step} to {path}")

    def _detach(self) -> None:
        monitor = self._require_current()
        monitor.detach()
        print(f"detached from {type(monitor.model).__name__} at step {monitor.current_step}")

    def _drop_replaced(self) -> None:
        """Let go of the monitors a new one replaced, and of their dashboards: those stay on
        screen, saying "replaced at step N", and are no longer this magic's."""
        replaced = [m for m in self.monitors if m.replaced_at is not None]
        for monitor in replaced:
            self.monitors.remove(monitor)
            self.dashboards.pop(monitor, None)

    def detach_all(self) -> None:
        for monitor in self.monitors:
            monitor.detach()
        for dashboard in self.dashboards.values():
            dashboard.close()
        self.dashboards.clear()

    def _require_current(self, attached: bool = True) -> Monitor:
        """The newest attached monitor; with ``attached=False`` the newest one, even detached."""
        candidates = [m for m in self.monitors if not (attached and m.detached)]
        if not candidates:
            state = "is attached" if attached else "was started"
            raise UsageError(f"%nnmodes: no monitor {state}; start one with %nnmodes watch MODEL [OPTIMIZER]")
        return candidates[-1]

    def _lookup(self, dotted: str):
        head, *attrs = dotted.split(".")
        if not head.isidentifier() or not all(a.isidentifier() for a in attrs):
            raise UsageError(f"%nnmodes: {dotted!r} is not a name")
        if head not in self.shell.user_ns:
            raise UsageError(f"%nnmodes: name {head!r} is not defined")
        obj = self.shell.user_ns[head]
        for i, attr in enumerate(attrs):
            if not hasattr(obj, attr):
                raise UsageError(f"%nnmodes: {'.'.join([head, *attrs[:i]])!r} has no attribute {attr!r}")
            obj = getattr(obj, attr)
        return obj


def _split_options(args: list[str], spec: dict) -> tuple[list[str], dict[str, list[str]]]:
    """Positional names and ``--option value...`` pairs; ``spec`` gives each option's arity."""
    names, options, i = [], {}, 0
    while i < len(args):
        word = args[i]
        if not word.startswith("--"):
            names.append(word)
            i += 1
            continue
        if word not in spec:
            raise UsageError(f"%nnmodes: unknown option {word!r}; options: {', '.join(spec)}")
        if word in options:
            raise UsageError(f"%nnmodes: option {word} given twice")
        low, high = spec[word] if isinstance(spec[word], tuple) else (spec[word], spec[word])
        values = []
        i += 1
        while i < len(args) and not args[i].startswith("--") and len(values) < high:
            values.append(args[i])
            i += 1
        if len(values) < low:
            raise UsageError(f"%nnmodes: option {word} needs a value")
        options[word] = values
    return names, options


def _number(text: str, kind: type, option: str):
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"%nnmodes: {option} expects {'an integer' if kind is int else 'a number'}, "
                         f"got {text!r}") from None


_MAGICS_KEY = "_nnmodes_magics"


def load(ipython) -> None:
    magics = NnmodesMagics(ipython)
    ipython.register_magics(magics)
    setattr(ipython, _MAGICS_KEY, magics)


def unload(ipython) -> None:
    magics = getattr(ipython, _MAGICS_KEY, None)
    if magics is not None:
        magics.detach_all()
        delattr(ipython, _MAGICS_KEY)
        ipython.magics_manager.magics["line"].pop("nnmodes", None)
