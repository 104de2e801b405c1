"""Public names imported on first use (PEP 562), for the packages' ``__init__``.

A process that starts for one decision should load only what that decision
needs, yet ``from trunkkey import PostgresLedger`` must keep working: each
package lists where its names are defined, and this one function turns that
list into the package's ``__getattr__`` and ``__dir__``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    namespace: dict[str, Any], defined_in: Mapping[str, str], submodules: frozenset[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose globals are ``namespace``.

    ``defined_in`` maps each public name to the submodule that defines it;
    ``submodules`` are the modules a bare import of the package used to load
    as a side effect, so that ``package.module`` still resolves.
    """

    def __getattr__(name: str) -> object:  # noqa: N807 -- it becomes the package's own
        module = defined_in.get(name, name if name in submodules else None)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        # What ``from .module import name`` runs: the import statement's own
        # path, so that ``python -X importtime`` still shows where time goes.
        if module == name:
            value: object = __import__(module, namespace, None, (), 1)
        else:
            value = getattr(__import__(module, namespace, None, (name,), 1), name)
        # Kept, so the next use is an ordinary attribute read.
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 -- it becomes the package's own
        return sorted({*namespace, *namespace.get("__all__", ()), *submodules})

    return __getattr__, __dir__
