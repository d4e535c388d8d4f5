"""The package's layers, read from the source (module-level and function-level imports):
imports point down only, there is no cycle, and nothing below the dialects names one
(type-only imports included)."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

import vandamme_oauth

#: The package under test: the source tree, or the installed wheel (nox session dist).
PACKAGE = Path(vandamme_oauth.__file__).resolve().parent

#: Bottom to top (see DESIGN.md). A module may import its own layer and the layers below.
LAYERS: dict[str, tuple[str, ...]] = {
    "ground": (
        "_exceptions",
        "_times",
        "_login",
        "_redact",
        "_validation",
        "_jwt_claims",
        "_pkce",
        "_backoff",
        "_closing",
        "_headless",
        "_telemetry",
    ),
    "core": (
        "_dialect",
        "_provider",
        "_protocol",
        "_token_response",
        "_device_codes",
        "_challenges",
        "_resource",
        "_registration",
    ),
    "transport": (
        "_http_client",
        "_endpoints",
        "_token_client",
        "_loopback_guard",
        "_callback_server",
        "_discovery",
        "_resource_discovery",
    ),
    "orchestration": (
        "_manager_policy",
        "_token_manager",
        "_pool",
        "_flow",
        "_device",
        "storage._base",
        "storage._memory",
        "storage._home_watch",
        "storage._filesystem",
        "storage._keyring",
        "_secrets",
        "storage._redis_hub",
        "storage._redis",
    ),
    "dialects": ("providers", "providers.chatgpt", "storage._codex"),
    "edges": (
        "__init__",
        "__main__",
        "storage",
        "_profiles",
        "_cli",
        "_cli_common",
        "_cli_login",
        "_cli_status",
        "integrations",
        "integrations._common",
        "integrations._web_login",
        "integrations.aiohttp",
        "integrations.httpx",
        "integrations.httpx2",
        "integrations._bearer_flow",
        "integrations.starlette",
    ),
}
DIALECTS = LAYERS["dialects"]
#: Upward calls the public API keeps on purpose: ``ProviderConfig.discover()`` (core) runs
#: discovery's I/O (transport) through one function-level import; no cycle comes of it.
ALLOWED_UPWARD = {("_provider", "_discovery")}

LEVEL = {module: level for level, modules in enumerate(LAYERS.values()) for module in modules}


def _path(module: str) -> Path:
    base = PACKAGE.joinpath(*module.split(".")) if module != "__init__" else PACKAGE
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def all_modules() -> set[str]:
    """Every module of the package, dotted, relative to it (``__init__`` for the top)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found.add(".".join(parts))
    return found


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of import nodes inside ``if TYPE_CHECKING:`` blocks."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return ids


def imports_of(module: str, *, type_only: bool = False) -> set[str]:
    """The package modules ``module`` imports at run time (module or function level), or,
    with ``type_only``, those it imports for type checking alone."""
    path = _path(module)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    if module == "__init__":
        package = []
    tree = ast.parse(path.read_text())
    typing_ids = _type_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if (id(node) in typing_ids) != type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = [*base, *(node.module.split(".") if node.module else [])]
            for alias in node.names:
                candidate = [*target, alias.name]
                if _path(".".join(candidate)).exists():
                    found.add(".".join(candidate))
                elif target:
                    found.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vandamme_oauth."):
            found.add((node.module or "").removeprefix("vandamme_oauth."))
        elif (
            isinstance(node, ast.Assign)
            and ast.unparse(node.targets[0]) == "_LAZY"
            and isinstance(node.value, ast.Dict)
        ):
            # __init__'s lazy names: {"Name": ".module"}, loaded by import_module on first use
            found |= {
                str(v.value).lstrip(".") for v in node.value.values if isinstance(v, ast.Constant)
            }
    return {name for name in found if name and _path(name).exists()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, by its first module)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports that point to a higher layer (less the allowed ones)."""
    return [
        f"{module} ({name_of(module)}) imports {target} ({name_of(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if LEVEL[target] > LEVEL[module] and (module, target) not in ALLOWED_UPWARD
    ]


def name_of(module: str) -> str:
    return list(LAYERS)[LEVEL[module]]


def naming_a_dialect(modules: set[str]) -> list[str]:
    """Modules below the dialects that import one, type-only imports included."""
    return [
        f"{module} imports {target}"
        for module in sorted(modules)
        if LEVEL[module] < LEVEL["providers"]
        for target in sorted(imports_of(module) | imports_of(module, type_only=True))
        if target in DIALECTS
    ]


def runtime_graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in all_modules()}


def test_every_module_has_a_layer() -> None:
    """A new module is placed in a layer here before it can be imported anywhere."""
    assert sorted(all_modules() - set(LEVEL)) == []


def test_imports_point_down_only() -> None:
    """No module imports one of a higher layer (one allowed, documented call excepted)."""
    assert upward(runtime_graph()) == []


def test_there_is_no_import_cycle() -> None:
    """Run-time imports, function-level ones included, form no cycle."""
    assert cycles(runtime_graph()) == []


def test_no_module_below_the_dialects_names_one() -> None:
    """The core, transport and orchestration ask a dialect object; they never import one."""
    assert naming_a_dialect(all_modules()) == []


def test_the_ground_floor_imports_only_the_ground_floor() -> None:
    """AuthData and the login-name rules import only the exceptions and the time checks."""
    assert imports_of("_login") == {"_exceptions", "_times"}
    assert imports_of("_exceptions") == set()


def test_the_reader_is_not_blind() -> None:
    """The reader sees module-level, function-level, type-only and lazy imports, and each
    check fails on a graph that breaks it."""
    assert "storage._base" in imports_of("_flow")
    assert "_callback_server" in imports_of("_flow")  # function level
    assert "providers.chatgpt" in imports_of("storage._codex")
    assert "_token_client" in imports_of("_device_codes", type_only=True)
    assert "_flow" in imports_of("__init__")  # lazy, through import_module
    broken = runtime_graph()
    broken["_token_response"].add("providers.chatgpt")
    broken["providers.chatgpt"].add("_token_response")
    found = cycles(broken)
    assert found
    assert all({"_token_response", "providers.chatgpt"} <= set(cycle) for cycle in found)
    assert upward(broken) == [
        "_token_response (core) imports providers.chatgpt (dialects)",
    ]


def test_a_core_module_naming_a_dialect_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dialect check reads type-only imports too: a core module that imports the ChatGPT
    dialect only for type checking is caught."""
    source = _path("_dialect").read_text()
    patched = source.replace(
        "if TYPE_CHECKING:\n", "if TYPE_CHECKING:\n    from .providers import chatgpt\n", 1
    )
    assert patched != source
    copy = tmp_path / "vandamme_oauth"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "_dialect.py").write_text(patched)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert naming_a_dialect(all_modules()) == ["_dialect imports providers.chatgpt"]


@pytest.mark.parametrize("module", sorted(LAYERS["core"]))
def test_core_modules_import_no_io(module: str) -> None:
    """The sans-I/O core imports no HTTP client or server at run time."""
    tree = ast.parse(_path(module).read_text())
    typing_ids = _type_only(tree)
    names = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_ids
        for alias in (node.names if isinstance(node, ast.Import) else [])
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level and id(node) not in typing_ids
    }
    assert sorted(names & {"httpx", "aiohttp", "redis", "anyio"}) == []
