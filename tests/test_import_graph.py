"""The package's layers, read from the source: the login itself (``_login``) on the ground
floor, the protocol core and the providers above it, and no arrow from either into storage
(runtime, type-checking and function-level imports all count)."""

from __future__ import annotations

import ast
from pathlib import Path

import vandamme_oauth

#: The package under test: the source tree, or the installed wheel (nox session dist).
PACKAGE = Path(vandamme_oauth.__file__).resolve().parent

#: The protocol core and the provider modules: OAuth and provider dialects, no storage.
CORE = (
    "_login",
    "_exceptions",
    "_times",
    "_jwt_claims",
    "_redact",
    "_validation",
    "_pkce",
    "_protocol",
    "_token_response",
    "_provider",
    "_device_codes",
    "_http_client",
    "_token_client",
    "_callback_server",
    "providers",
    "providers.chatgpt",
)


def _path(module: str) -> Path:
    base = PACKAGE.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """The package modules ``module`` imports (dotted, relative to the package)."""
    path = _path(module)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
            found.add(node.module.removeprefix("vandamme_oauth."))  # type: ignore[union-attr]
    return {name for name in found if name and _path(name).exists()}


def closure(start: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports_of(module))
    return seen


def test_the_login_is_on_the_ground_floor() -> None:
    """AuthData and the login-name rules import only the exceptions and the time checks."""
    assert imports_of("_login") == {"_exceptions", "_times"}
    assert imports_of("_exceptions") == set()


def test_no_arrow_from_the_protocol_core_or_the_providers_into_storage() -> None:
    """Everything the core and the providers reach, directly or not, is outside storage."""
    reached = closure(CORE)
    assert "_login" in reached
    assert "providers.chatgpt" in reached
    assert sorted(m for m in reached if m.startswith("storage")) == []


def test_the_graph_reader_sees_storage_imports() -> None:
    """The reader is not blind: the flows and backends do import storage."""
    assert "storage._base" in imports_of("_flow")
    assert "providers.chatgpt" in imports_of("storage._codex")
    assert "storage._filesystem" in closure(("_cli",))
