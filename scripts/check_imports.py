#!/usr/bin/env python3
"""Check the import graph: no cycles, no import that runs back up the layers, no unexplained long module.

    python3 scripts/check_imports.py            # stream_engine, plugins and gui (exit status 1 on a finding)
    python3 scripts/check_imports.py --graph    # also print every module's layer and imports

Every ``import`` in the source counts, at the top of a file or inside a
function (the engine imports its heavy packages lazily, and a lazy import is
still a dependency). Relative imports are resolved; imports of modules
outside the checked packages are ignored. Not seen: imports by a name
computed at run time (``cli.py`` loads the command modules of the layer below
it that way; ``__import__`` of a literal string is seen).

The layers, bottom to top, are ``LAYERS`` below: a module may import from its
own layer and the layers beneath it. A module the table does not place is a
finding too, so a new module gets a place when it is added. The desktop app
(``gui``) has the top layers: nothing in the engine may import it, and inside
it only ``gui.app`` may import the window (the window's parts get what they
share from small modules below them, never from the window).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGES = ("stream_engine", "plugins", "gui")
MAX_LINES = 500
LONG_MARK = "Long module"  # "# Long module (over 500 lines): why" at the top of a longer one

# (layer name, module patterns); ``x.*`` matches x and everything under it, the most specific pattern wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation: values, errors, files, rings, statistics",
     ("stream_engine", "stream_engine.errors", "stream_engine.params", "stream_engine.profiles",
      "stream_engine.latency", "stream_engine.stats", "stream_engine.ring", "stream_engine.metrics",
      "stream_engine.audio_io", "stream_engine.presets", "stream_engine.untrusted", "stream_engine.demo.*", "stream_engine.models")),
    ("separators: window -> stems, framing, composition, lookup",
     ("stream_engine.separators.*",)),
    ("effects: per-stem processing after separation",
     ("plugins.*", "stream_engine.pitch", "stream_engine.resample", "stream_engine.bands")),
    ("signal path: stages, mixer, the one pipeline",
     ("stream_engine.stages", "stream_engine.mixer", "stream_engine.pipeline")),
    ("runners: offline, batch, real time, switches, inputs, devices, evaluation",
     ("stream_engine.offline", "stream_engine.batch", "stream_engine.cluster", "stream_engine.evaluate",
      "stream_engine.report", "stream_engine.handover", "stream_engine.realtime", "stream_engine.control",
      "stream_engine.sources", "stream_engine.devices", "stream_engine.scenes", "stream_engine.bench",
      # drivers of outside programs (jackd, Ardour): the test harness uses them, and so does `daw_session`
      "stream_engine.tools.jack", "stream_engine.tools.ardour")),
    ("front ends and the public API",
     ("stream_engine.api", "stream_engine.osc.*", "stream_engine.live", "stream_engine.daw_session",
      "stream_engine.training.*", "stemstream", "stemstream.*")),
    ("measurement and test harness (JACK, Ardour, soak, switch bench)",
     ("stream_engine.tools.*",)),
    ("command line", ("stream_engine.cli",)),
    # The desktop app, above everything in the engine, in layers of its own.
    ("app foundation: settings, jobs, widgets, names the app's parts share",
     ("gui", "gui.settings", "gui.setting_keys", "gui.jobs", "gui.widgets", "gui.choices", "gui.models",
      "gui.jack_ports", "gui.live_config")),
    ("app audio: devices, inputs, mic channel, master bus, taps, the live session, the preview player",
     ("gui.audio", "gui.audio_devices", "gui.input_sources", "gui.mic_channel", "gui.master_bus", "gui.taps",
      "gui.preview", "gui.separate")),
    ("app panels: the Live and Files tabs and their parts",
     ("gui.live_tab", "gui.fx_panel", "gui.player", "gui.files_tab", "gui.files_batch", "gui.files_results",
      "gui.files_preview", "gui.files_export")),
    ("window parts: what the window wires between the tabs and the engine",
     ("gui.live_control", "gui.model_choice", "gui.device_choice", "gui.param_wiring", "gui.engine_control",
      "gui.readouts")),
    ("the window", ("gui.window",)),
    ("app entry point", ("gui.app",)),
]

def long_reason(text: str) -> bool:
    """Whether the module says why it is long: ``LONG_MARK`` in its docstring or the lines right after it."""
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return False
    top = body[0].end_lineno if body and isinstance(body[0], ast.Expr) else 0
    return any(LONG_MARK in line for line in text.splitlines()[: top + 4])


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect(packages, root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for package in packages:
        base = root / package.replace(".", "/")
        files = [base.with_suffix(".py")] if base.with_suffix(".py").exists() else sorted(base.rglob("*.py"))
        for path in files:
            modules[module_name(path, root)] = path
    return modules


def imports_of(name: str, path: Path, known) -> set[str]:
    """The known modules ``name`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def add(target: str, names=()):
        hit = False
        for n in names:  # `from pkg import mod` imports the module pkg.mod
            if f"{target}.{n}" in known:
                found.add(f"{target}.{n}")
                hit = True
        if not hit:
            while target and target not in known:  # `import a.b.c` of an unknown c: its package
                target = target.rpartition(".")[0]
            if target:
                found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            add(target, [a.name for a in node.names])
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
              in ("__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            add(node.args[0].value)
    found.discard(name)
    return found


def unit_of(name: str) -> str:
    """A module's folder below the top package (``stream_engine.separators``), or the module itself."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else name


def layer_of(name: str) -> int | None:
    best, best_len = None, -1
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            prefix = pattern[:-2] if pattern.endswith(".*") else None
            if pattern == name or (prefix is not None and (name == prefix or name.startswith(prefix + "."))):
                specific = len(pattern) + (1 if prefix is None else 0)
                if specific > best_len:
                    best, best_len = index, specific
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a closed path."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(path_through(graph, set(component)))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def path_through(graph, component: set[str]) -> list[str]:
    """One closed path inside a strongly connected component (breadth-first back to its start)."""
    start = min(component)
    previous, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(component)


def check(packages=DEFAULT_PACKAGES, root: Path = ROOT, show_graph: bool = False, out=sys.stdout) -> int:
    """Print the findings; return how many there are."""
    modules = collect(packages, root)
    known = set(modules) | set(collect(("gui",), root)) if (root / "gui").is_dir() else set(modules)
    graph = {name: imports_of(name, path, known) for name, path in modules.items()}
    findings = []
    for name in sorted(modules):
        if layer_of(name) is None:
            findings.append(f"{name}: in no layer; give it one in LAYERS ({Path(__file__).name})")
    for name, targets in sorted(graph.items()):
        mine = layer_of(name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                findings.append(f"upward import: {name} (layer {mine}, {LAYERS[mine][0].split(':')[0]}) imports "
                                f"{target} (layer {theirs}, {LAYERS[theirs][0].split(':')[0]})")
    inside = {name: targets & set(modules) for name, targets in graph.items()}
    for loop in cycles(inside):
        findings.append("import cycle: " + " -> ".join(loop))
    # A folder is a unit too: a sub-package and the modules beside it must not import each other both ways
    # (separators/hybrid.py importing the framer, which imports separators/base.py, was such a loop).
    units: dict[str, set[str]] = {}
    folders = {unit_of(m) for m in modules if unit_of(m) != m}
    for name, targets in inside.items():
        units.setdefault(unit_of(name), set()).update(unit_of(t) for t in targets)
    for unit, targets in units.items():
        targets.discard(unit)
    for loop in cycles(units):
        if set(loop) & folders:  # cycles of single modules are reported above
            findings.append("folder cycle: " + " -> ".join(loop))
    for name, path in sorted(modules.items()):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_LINES and not long_reason(text):
            findings.append(f"{name}: {lines} lines (over {MAX_LINES}) and no reason at its top "
                            f"(a '{LONG_MARK}' comment right after the module docstring)")
    if show_graph:
        for name in sorted(modules, key=lambda n: (layer_of(n) if layer_of(n) is not None else -1, n)):
            print(f"[{layer_of(name)}] {name} -> {', '.join(sorted(graph[name])) or '-'}", file=out)
    for finding in findings:
        print(finding, file=out)
    edges = sum(len(t) for t in graph.values())
    print(f"{len(modules)} modules, {edges} imports, {len(LAYERS)} layers: "
          f"{len(findings) or 'no'} finding{'s' if len(findings) != 1 else ''}", file=out)
    return len(findings)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("packages", nargs="*", default=list(DEFAULT_PACKAGES))
    p.add_argument("--root", default=str(ROOT), help="the folder holding the packages (default: this repository)")
    p.add_argument("--graph", action="store_true", help="print each module's layer and imports")
    args = p.parse_args(argv)
    return 1 if check(args.packages, Path(args.root), args.graph) else 0


if __name__ == "__main__":
    raise SystemExit(main())
