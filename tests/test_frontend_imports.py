"""frontend/src has no import loop: the shell (app.ts) imports the views, and the views only see
the small ViewHost interface (host.ts), never app.ts. Type-only imports count too: a view that
names App is coupled to the whole shell."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "frontend" / "src"
_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;]*?\bfrom\s+["']\./([\w-]+)["']""", re.M)


def _graph() -> dict[str, set[str]]:
    return {p.stem: set(_IMPORT.findall(p.read_text(encoding="utf-8")))
            for p in sorted(SRC.glob("*.ts"))}


def test_views_do_not_import_the_shell():
    graph = _graph()
    views = ["overview", "compare", "detail", "inspector"]
    # the shell: its state (app.ts) and its parts, which see it as the Shell interface
    shell = ["app", "timeline_page", "toolbar", "applink"]
    assert set(views) <= set(graph) and {"host", "shell", *shell} <= set(graph)
    imported = set().union(*(graph[s] for s in shell))
    assert set(views) <= imported  # the shell does import every view (the parser works)
    for view in views:
        assert "host" in graph[view], f"{view}.ts: expected to take a ViewHost from host.ts"
        for part in (*shell, "shell"):
            assert part not in graph[view], f"{view}.ts imports {part}.ts: views see the ViewHost only"
    for part in shell[1:]:
        assert "app" not in graph[part], f"{part}.ts imports app.ts: an import loop"


def test_no_import_cycle_in_frontend_src():
    graph = _graph()
    assert graph and any(graph.values())
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
