"""The repository's structural rules (docs/architecture.md §2 and §9), checked on the source.

- the module import graph of the product packages has no cycle, counting imports inside
  functions too (a lazy import hides a cycle, it does not remove it); only imports under
  ``if TYPE_CHECKING:`` are left out, since they never run;
- ``agent/`` never imports ``coordinator``, FastAPI or brownie;
- only the benchmarks' own tests (``tests/bench/``) import ``bench``;
- nothing outside ``agent/site.py`` reads the site's private fields;
- comments and docstrings refer only to documents inside the repository;
- tests wait for conditions, never for wall time (docs/architecture.md §7): no test module but
  ``tests/support/waiting.py`` calls ``time.sleep`` or ``asyncio.sleep`` with a non-zero delay,
  except the few sleeps that simulate a hang (``SIMULATED_HANGS``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "coordinator", "gridswarm", "app")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(target: str) -> None:
        # the longest known module prefix of the target
        parts = target.split(".")
        while parts:
            cand = ".".join(parts)
            if cand in modules:
                if cand != name:
                    found.add(cand)
                return
            parts.pop()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    resolve(alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                for alias in node.names:
                    sub = f"{prefix}.{alias.name}"
                    if sub in modules:
                        resolve(sub)
                    else:
                        resolve(prefix)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
            else:
                visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    for name in list(graph):
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in graph and parent != name:
                graph[name].add(parent)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _is_parent_edge(a: str, b: str) -> bool:
    return a.startswith(b + ".") or b.startswith(a + ".")


def test_import_graph_has_no_cycle() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its submodules is not a cycle worth breaking: drop the
    # implicit child -> parent edges before looking for cycles among real imports
    real = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    cycles = [c for c in _cycles(real) if not all(_is_parent_edge(a, b) for a in c for b in c if a != b)]
    assert cycles == [], f"import cycles: {cycles}"


def test_agent_never_imports_coordinator_fastapi_or_brownie() -> None:
    bad = re.compile(r"^\s*(from|import)\s+(coordinator|fastapi|brownie|starlette|uvicorn)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*.py") if bad.search(p.read_text())]
    assert offenders == []


def test_comments_refer_only_to_documents_in_the_repository() -> None:
    outside = re.compile(r"DESIGN\s*§|DESIGN\.md|STYLE\b|TOOLCHAIN\.md|DATA\.md|\.\./shared/|\bseeds?\s+00\d|\(K[1-5]\)|\bK[1-5]\b")
    offenders = []
    for pkg in (*PACKAGES, "contracts", "scripts"):
        for path in (ROOT / pkg).rglob("*"):
            if path.suffix not in {".py", ".sol", ".sh"} or "node_modules" in path.parts:
                continue
            for no, line in enumerate(path.read_text().splitlines(), 1):
                if outside.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)


def test_product_code_imports_no_benchmark_and_no_command_line_module() -> None:
    """Data flows one way: benchmarks and command-line shells import the product, never the
    reverse (``app.cli`` reaches the benchmarks through names, lazily)."""
    graph = _graph()
    shells = {m for m in graph if m == "app" or m.startswith("app.")} | {"coordinator.market.cli", "agent.forecast.cli"}
    offenders = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m not in shells
        for d in deps
        if d in shells
    )
    bad_bench = sorted(
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if ".".join(p.relative_to(ROOT).with_suffix("").parts) not in shells
        and re.search(r"^\s*(from|import)\s+bench\b", p.read_text(), re.M)
    )
    assert offenders == [] and bad_bench == [], (offenders, bad_bench)


def _bench_imports(path: Path) -> list[int]:
    """Lines of ``path`` that import ``bench``: import statements anywhere, and Python code in a
    string (run by a subprocess)."""
    in_code = re.compile(r"\bfrom\s+bench(\.\w+)*\s+import\b|\bimport\s+bench\b")
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and in_code.search(node.value):
            names = ["bench"]
        else:
            continue
        if any(n == "bench" or n.startswith("bench.") for n in names):
            lines.append(node.lineno)
    return lines


def test_only_the_benchmarks_tests_import_a_benchmark() -> None:
    """A test of the product builds its set-up from the tests' own support (``tests/conftest.py``
    and the helpers beside the tests) or the product, never from ``bench/``; only ``tests/bench/``,
    which tests the benchmarks, imports them."""
    offenders = sorted(
        f"{p.relative_to(ROOT)}:{no}"
        for p in (ROOT / "tests").rglob("*.py")
        if p.relative_to(ROOT / "tests").parts[0] != "bench"
        for no in _bench_imports(p)
    )
    assert offenders == [], offenders


def test_the_shared_protocol_and_the_product_never_import_the_shell() -> None:
    """``gridswarm`` (clock, envelope, messages, chain client, keys, errors) is what both sides
    share; ``app`` (the command, the demo, deployment, the local node, the compiler) is the
    application shell on top. Imports run one way: from the shell down, never back up."""
    graph = _graph()
    offenders = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if not (m == "app" or m.startswith("app."))
        for d in deps
        if d == "app" or d.startswith("app.")
    )
    assert offenders == [], offenders


def test_controllers_never_import_a_driver_implementation() -> None:
    """The site, the runtime and the control stack talk to devices through the driver contract
    (``agent/drivers/base.py``) only; the simulator and SunSpec stay behind it, reached through
    ``agent/drivers/build.py``."""
    graph = _graph()
    implementations = {"agent.drivers.sim", "agent.drivers.sunspec", "agent.drivers.sunspec_sim"}
    controllers = [m for m in graph if m in ("agent.site", "agent.runtime", "agent.trader", "agent.trading",
                                             "agent.link", "agent.dispatch_check")
                   or m.startswith("agent.control.")]
    offenders = sorted(f"{m} -> {d}" for m in controllers for d in graph[m] if d in implementations)
    assert offenders == [], offenders


def test_the_runtime_does_not_probe_the_site() -> None:
    """The runtime and its parts see the site through ``agent/site_port.py``, never ``getattr``."""
    probe = re.compile(r"getattr\((self\.)?site\b")
    offenders = [f"{p.name}:{no}" for p in (ROOT / "agent").glob("*.py")
                 if p.name in ("runtime.py", "trading.py", "link.py", "trader.py")
                 for no, line in enumerate(p.read_text().splitlines(), 1) if probe.search(line)]
    assert offenders == [], offenders


def test_only_the_site_reads_its_private_fields() -> None:
    """Code and tests outside ``agent/site.py`` use the site's public members (the protocols of
    ``agent/site_port.py``, the read-only properties of ``agent/site.py``), never ``site._...``."""
    reach = re.compile(r"\bsite\._[A-Za-z]")
    offenders = [
        f"{path.relative_to(ROOT)}:{no}: {line.strip()}"
        for pkg in (*PACKAGES, "bench", "scripts", "tests")
        for path in (ROOT / pkg).rglob("*.py")
        if path != ROOT / "agent" / "site.py"
        for no, line in enumerate(path.read_text().splitlines(), 1)
        if reach.search(line)
    ]
    assert offenders == [], "\n".join(offenders)


def test_the_coordinators_sql_lives_in_the_store_only() -> None:
    """One typed store API (``coordinator/store/``: the schema, the market's reads, the chain
    projection, the analytics read model); everything else in the coordinator calls its methods
    and holds neither SQL nor table access."""
    sql = re.compile(r"^\s*(select\b|insert\s+(or\s+\w+\s+)?into\b|update\s+\w+\s+set\b|delete\s+from\b|with\s+\w+\s+as\b)",
                     re.I)
    access = re.compile(r"\bstore\.(query|one|db|transaction)\b|\bdb\[|\.execute\(")
    offenders = []
    for path in (ROOT / "coordinator").rglob("*.py"):
        if "store" in path.relative_to(ROOT / "coordinator").parts[:1]:
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.search(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: SQL")
        for no, line in enumerate(text.splitlines(), 1):
            if access.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)


# ------------------------------------------------------------------ no wall-clock sleeps in tests

WAITING = ROOT / "tests" / "support" / "waiting.py"
# (test module, the delay expression) -> why the sleep simulates behaviour rather than waits
SIMULATED_HANGS = {
    ("tests/agent/drivers/field_device.py", "self.timeout_delay_s"): "a device that hangs under fault 'timeout'",
    ("tests/agent/test_runtime_shutdown.py", "FOREVER_S"): "loops that never end by themselves, for shutdown",
}


def _sleeps(source: str) -> list[tuple[int, str, str]]:
    """Each wall-clock sleep in ``source``: (line, the call, its delay expression). ``time.sleep``
    counts however it is reached; ``asyncio.sleep`` unless its delay is the literal 0 (a yield
    to the event loop)."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> "time" / "asyncio"
    functions: dict[str, str] = {}  # local name -> "time.sleep" / "asyncio.sleep"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("time", "asyncio"):
                    modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "asyncio"):
            for alias in node.names:
                if alias.name == "sleep":
                    functions[alias.asname or alias.name] = f"{node.module}.sleep"

    def target(func: ast.expr) -> str | None:
        if isinstance(func, ast.Attribute) and func.attr == "sleep" and isinstance(func.value, ast.Name):
            module = modules.get(func.value.id)
            return f"{module}.sleep" if module else None
        if isinstance(func, ast.Name):
            return functions.get(func.id)
        return None

    found = []
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := target(node.func)):
            called.add(id(node.func))
            delay = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "delay"), None)
            text = ast.unparse(delay) if delay is not None else ""
            if name == "asyncio.sleep" and isinstance(delay, ast.Constant) and delay.value == 0:
                continue
            found.append((node.lineno, name, text))
    for node in ast.walk(tree):  # time.sleep handed on uncalled (to a thread, an executor)
        if isinstance(node, ast.Attribute | ast.Name) and id(node) not in called and target(node) == "time.sleep":
            found.append((node.lineno, "time.sleep", "?"))
    return sorted(found)


def test_the_sleep_check_finds_sleeps() -> None:
    """The check below can fail: it finds every way a test could sleep on the wall clock."""
    source = """
import asyncio
import time as t
from asyncio import sleep as nap
from time import sleep

async def f(x):
    t.sleep(1)
    sleep(0)
    await asyncio.sleep(0.3)
    await asyncio.sleep(x)
    await nap(delay=2)
    await asyncio.sleep(0)
    await asyncio.to_thread(t.sleep, 1)
    await clock.sleep(5)
"""
    assert _sleeps(source) == [
        (8, "time.sleep", "1"),
        (9, "time.sleep", "0"),
        (10, "asyncio.sleep", "0.3"),
        (11, "asyncio.sleep", "x"),
        (12, "asyncio.sleep", "2"),
        (14, "time.sleep", "?"),
    ]


def test_tests_wait_for_conditions_not_for_wall_time() -> None:
    """A test waits for what it needs with ``tests/support/waiting.py``, moves a ``ManualClock``
    or the chain's clock (``Market.advance_chain``), and sleeps only to simulate a hang."""
    offenders, used = [], set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path == WAITING:
            continue
        rel = str(path.relative_to(ROOT))
        for line, name, delay in _sleeps(path.read_text()):
            if (rel, delay) in SIMULATED_HANGS:
                used.add((rel, delay))
            else:
                offenders.append(f"{rel}:{line}: {name}({delay})")
    assert offenders == [], "wait for a condition instead (tests/support/waiting.py):\n" + "\n".join(offenders)
    assert used == set(SIMULATED_HANGS), f"stale allow-list entries: {set(SIMULATED_HANGS) - used}"
