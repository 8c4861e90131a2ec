"""The per-process model cache: each vision model is built once, on first use, and reused.

mediapipe solution graphs and onnxruntime sessions are not safe to call from two threads at once, so every
cached model comes with its own lock; `use(key, factory)` hands out the model and holds its lock while the
caller runs it. Nothing here imports a model library: the factories do, when first called.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.Lock()
_MODELS: dict[Hashable, tuple[Any, threading.Lock]] = {}


def _entry(key: Hashable, factory: Callable[[], Any]) -> tuple[Any, threading.Lock]:
    with _LOCK:
        entry = _MODELS.get(key)
        if entry is None:
            entry = (factory(), threading.Lock())
            _MODELS[key] = entry
        return entry


QUIET_CALLS = 3
"""The first calls of each model run with fd 2 silenced: mediapipe's graphs log native lines as they warm up."""
_CALLS: dict[Hashable, int] = {}


@contextmanager
def use(key: Hashable, factory: Callable[[], Any]) -> Iterator[Any]:
    """The model cached under `key` (built by `factory` the first time), locked for the caller's use.

    Example:
        >>> with use(("double",), lambda: (lambda x: 2 * x)) as model:
        ...     model(21)
        42
    """
    model, lock = _entry(key, factory)
    with lock:
        calls = _CALLS.get(key, 0)
        _CALLS[key] = calls + 1
        if calls < QUIET_CALLS and isinstance(key, tuple) and key[:1] == ("mediapipe",):
            with quiet_stderr():
                yield model
        else:
            yield model


def loaded() -> list[Hashable]:
    """Keys of the models built so far in this process (tests check that importing loads none)."""
    with _LOCK:
        return list(_MODELS)


def clear() -> None:
    """Drop every cached model (closing those that can be closed)."""
    with _LOCK:
        entries = list(_MODELS.values())
        _MODELS.clear()
        _CALLS.clear()
    for model, _ in entries:
        close = getattr(model, "close", None)
        if callable(close):
            close()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (native libraries' log lines at model load); Python errors still propagate."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def warmed(solution: Any) -> Any:
    """Run a mediapipe solution once on a blank image, quietly: its graph logs on the first call."""
    import numpy as np

    with quiet_stderr():
        solution.process(np.zeros((64, 64, 3), np.uint8))
    return solution


def import_mediapipe() -> object:
    """`import mediapipe` with its C++ logging quieted (glog INFO/WARNING lines on every graph start)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings(), quiet_stderr():
        warnings.simplefilter("ignore")
        import mediapipe

    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated")
    return mediapipe
