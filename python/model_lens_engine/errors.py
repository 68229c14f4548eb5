"""Protocol errors (src/protocol/errors.ts) and locating the user's frames in a traceback."""

import functools
import os
import sysconfig
import traceback

from .protocol import BAD_REQUEST as INVALID_PARAMS  # noqa: F401
from .protocol import CANCELLED, ENVIRONMENT, ERROR_CODE_OF_KIND, INTERNAL, NOT_FOUND, USER_ERROR  # noqa: F401

# A userStack longer than this is noise in an editor diagnostic.
MAX_USER_STACK_FRAMES = 8

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIRS = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")}
    if p
)
_LIBRARY_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_torch_dir = None


def _torch_prefix():
    global _torch_dir
    if _torch_dir is None:
        try:
            import torch

            _torch_dir = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
        except Exception:
            _torch_dir = "\0"
    return _torch_dir


class EngineFault(Exception):
    """An error that crosses the wire as a JSON-RPC error with EngineErrorData."""

    def __init__(self, code, kind, message, **data):
        super().__init__(message)
        # The kind decides the code (src/protocol/errors.ts ERROR_CODE_OF_KIND), whatever the caller passed.
        self.code = ERROR_CODE_OF_KIND.get(kind, code)
        self.message = message
        self.data = {"kind": kind}
        for k, v in data.items():
            if v is not None:
                self.data[k] = v


def user_fault(kind, message, **data):
    return EngineFault(USER_ERROR, kind, message, **data)


def not_found(kind, message, **data):
    return EngineFault(NOT_FOUND, kind, message, **data)


def bad_request(message, **data):
    return EngineFault(INVALID_PARAMS, "badRequest", message, **data)


def location(file, line, function=None, column=None):
    loc = {"file": file, "line": int(line or 1)}
    if column:
        loc["column"] = int(column)
    if function:
        loc["function"] = function
    return loc


@functools.lru_cache(maxsize=4096)
def is_framework_file(path):
    """torch itself, this engine, the standard library, or generated code: never the place a user
    would want to jump to. torchvision and other libraries are not framework here: their
    `self.conv1 = nn.Conv2d(...)` lines are where those modules come from."""
    if not path or path.startswith("<"):
        return True
    real = os.path.realpath(path)
    if real.startswith(_torch_prefix()) or real.startswith(_ENGINE_DIR + os.sep):
        return True
    return any(real.startswith(d) for d in _STDLIB_DIRS) and not any(
        m in real for m in _LIBRARY_MARKERS
    )


@functools.lru_cache(maxsize=4096)
def is_library_file(path):
    real = os.path.realpath(path) if path and not path.startswith("<") else ""
    return is_framework_file(path) or any(m in real for m in _LIBRARY_MARKERS)


class UserScope:
    """Which files count as the user's: the model file's folder, and failing that any file that
    is not torch, a library, the standard library or the engine."""

    def __init__(self, root=None):
        self.root = os.path.realpath(root) + os.sep if root else None
        self._cache = {}

    def is_user_file(self, path):
        hit = self._cache.get(path)
        if hit is None:
            hit = self._cache[path] = self._is_user_file(path)
        return hit

    def _is_user_file(self, path):
        if not path or path.startswith("<"):
            return False
        real = os.path.realpath(path)
        if real.startswith(_ENGINE_DIR + os.sep):
            return False
        if self.root and real.startswith(self.root):
            return True
        return not is_library_file(path)

    def user_frames_of_tb(self, tb):
        """SourceLocations of user frames in a traceback, innermost last."""
        frames = []
        for fs in traceback.extract_tb(tb):
            if self.is_user_file(fs.filename):
                frames.append(location(fs.filename, fs.lineno, fs.name))
        return frames[-MAX_USER_STACK_FRAMES:]

    def innermost_user_frame(self, frame, framework_only=False):
        """Walks outwards from `frame`; with framework_only, libraries such as torchvision count."""
        f = frame
        while f is not None:
            fn = f.f_code.co_filename
            ok = (not is_framework_file(fn)) if framework_only else self.is_user_file(fn)
            if ok:
                return location(fn, f.f_lineno, f.f_code.co_name)
            f = f.f_back
        return None


def short_exception(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    return text if len(text) < 2000 else text[:2000] + "…"
