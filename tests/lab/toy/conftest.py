"""The toy fixtures (a tiny toy checkpoint built once per session) for the lab's toy tests."""

from tests.toy.conftest import tiny_toy, tiny_toy_dir  # noqa: F401  (the toy model fixtures)
