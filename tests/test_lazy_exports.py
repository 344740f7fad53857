"""Packages re-export their public names lazily: each name resolves to its defining module's object."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["streams", "agent.mqtt", "agent.memory", "flexselect.lite"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_its_defining_modules_object(package: str):
    module = importlib.import_module(package)
    for name in module.__all__:
        defining = importlib.import_module(module._EXPORTS[name])
        assert getattr(module, name) is getattr(defining, name), name
        assert name in dir(module)


def test_an_unknown_name_is_an_attribute_error_naming_the_package():
    with pytest.raises(AttributeError, match=r"module 'agent\.mqtt' has no attribute 'Nope'"):
        importlib.import_module("agent.mqtt").Nope  # noqa: B018
