"""Dependencies point one way: an automatic check of the import graph, so it cannot drift back.

Every `import`/`from … import` of a `sovra` module anywhere in a module (function-level ones
included) is an edge. The rules:

- no cycles between modules;
- the shared vocabulary at the bottom (`errors`, `usage`, `database`, `spec`, `storage`, `autoscale`) imports no
  feature package;
- `inference`, `routing`, `observe`, `evals`, `deploy`, `crossplane` and `config` never import
  `access` (the request path), `access` never imports `config` (its settings are passed in), and
  `config` imports no feature package at all;
- only the command line (`cli/`, `__main__`) imports `runtime`, and nothing imports the
  command line.
"""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
BOTTOM = {"errors", "usage", "database", "spec", "storage", "autoscale"}
NOT_ACCESS = {"inference", "routing", "observe", "evals", "deploy", "crossplane", "config"}
FEATURES = {"access", "inference", "routing", "observe", "evals", "deploy", "crossplane", "runtime"}
COMMAND_LINE = {"cli", "__main__"}


def modules() -> dict[str, set[str]]:
    """module name (sovra.x.y) → the sovra modules it imports (the code uses absolute imports only)."""
    paths = {_name(path): path for path in (SRC / "sovra").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("sovra")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sovra"):
                assert node.level == 0, f"{name}: relative import"
                base = str(node.module)
                edges |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        edges.discard(name)
    return graph


def _name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles() -> None:
    graph = modules()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, deps in sorted(modules().items()):
        layer = top(module)
        for dep in sorted(deps):
            target = top(dep)
            if target == layer:
                continue
            if layer in BOTTOM and (target in FEATURES or target in COMMAND_LINE or target == "config"):
                wrong.append(f"{module} → {dep} (the bottom imports no feature)")
            if layer in NOT_ACCESS and target == "access":
                wrong.append(f"{module} → {dep} (only the request path is access)")
            if layer == "access" and target == "config":
                wrong.append(f"{module} → {dep} (settings are passed in, not read)")
            if layer == "config" and target in FEATURES:
                wrong.append(f"{module} → {dep} (config imports no feature)")
            if target == "runtime" and layer not in COMMAND_LINE:
                wrong.append(f"{module} → {dep} (only the command line wires the runtime)")
            if target in COMMAND_LINE and layer not in COMMAND_LINE:
                wrong.append(f"{module} → {dep} (nothing imports the command line)")
    assert wrong == []


def test_the_command_line_loads_no_heavy_library_before_a_command_runs() -> None:
    """`sovra --help` (and argument errors) must stay quick: nothing at import does real work."""
    heavy = {"numpy", "aiohttp", "uvicorn", "jinja2", "jsonschema", "pydantic", "starlette", "httpx", "yaml",
             "prometheus_client", "redis", "psycopg", "huggingface_hub", "asyncio"}  # fmt: skip
    probe = "import sys, sovra.cli; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert set(loaded.split()) & heavy == set()
