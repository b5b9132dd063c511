"""Every exception class the product defines descends from the one root,
:class:`gridswarm.errors.GridSwarmError`, so the CLI and the API map errors in one place."""

from __future__ import annotations

import importlib
import inspect

from gridswarm.errors import GridSwarmError
from tests.meta.test_architecture import _modules


def _exception_classes() -> dict[str, type[BaseException]]:
    out: dict[str, type[BaseException]] = {}
    for name in sorted(_modules()):
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name:
                out[f"{name}.{cls_name}"] = cls
    return out


def test_every_product_exception_descends_from_the_root() -> None:
    found = _exception_classes()
    assert len(found) >= 20, sorted(found)  # the walk saw the product's errors
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, GridSwarmError))
    assert not strays, f"exceptions outside GridSwarmError: {strays}"
