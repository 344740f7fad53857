"""The selector fixtures (a tiny Qwen2.5-VL, a selector for it, one torch thread) for the lab's tests."""

from tests.selector.conftest import _one_thread, qwen, qwen_dir, selector  # noqa: F401  (shared fixtures)
