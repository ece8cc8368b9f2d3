"""No import cycle anywhere in keras_dml, imports inside functions included.

Every module is parsed with `ast` (nothing is imported), and each `import` or
`from ... import` of `keras_dml.*` becomes an edge of a graph between modules:

- `import keras_dml.a.b` and `from keras_dml.a import b` (`b` a submodule) import the
  module `keras_dml.a.b`; `from keras_dml.a import name` (`name` defined in the package)
  imports the package `keras_dml.a` itself, i.e. its `__init__`.
- Importing `keras_dml.a.b` also runs the `__init__` of each package above it, so those
  are edges too, except the packages that contain the importing module: Python has
  already started them before the module runs, and a module that takes only submodules
  from its own package does not depend on the package's `__init__` having finished.
  That is why a package `__init__` that imports its own submodules is not a cycle, while
  a submodule that takes a *name* from its package's `__init__` is one: that name may
  not be defined yet.

A cycle is a strongly connected component of more than one module.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(root):
    """`{module name: path}` of every module under `root / "keras_dml"`."""
    found = {}
    for path in sorted((root / "keras_dml").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name, path, known):
    """The keras_dml modules that module `name` (at `path`) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # relative: from the package, up level - 1 more
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([source] if source else []))
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in known else source)
    return {target for target in targets if target in known}


def import_graph(root):
    """`{module: set of modules it makes Python run}` for the package under `root`."""
    known = modules(root)
    graph = {}
    for name, path in known.items():
        edges = set()
        containing = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
        for target in imported(name, path, known):
            parts = target.split(".")
            above = {".".join(parts[:i]) for i in range(1, len(parts))}
            edges |= ({target} | above) - containing
        graph[name] = edges
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_graph_sees_function_level_and_package_imports():
    graph = import_graph(ROOT)
    assert "keras_dml.search.exact" in graph["keras_dml.search"]  # a package importing its submodule
    assert "keras_dml.search" in graph["keras_dml.evaluation.metrics"]  # a name from a package
    assert "keras_dml.search" not in graph["keras_dml.search.index"]  # only submodules of its own package
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(toy) == [["a", "b", "c"]]


def test_no_import_cycles_in_keras_dml():
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(component) for component in found)


def test_index_does_not_import_evaluation():
    graph = import_graph(ROOT)
    reached, todo = set(), ["keras_dml.search.index"]
    while todo:
        for other in graph[todo.pop()] - reached:
            reached.add(other)
            todo.append(other)
    assert not {name for name in reached if name.startswith("keras_dml.evaluation")}
