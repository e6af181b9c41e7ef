"""Third-party noise kept off a command's output (issue 27, H): one place decides.

Libraries talk on their own: TensorFlow's native start-up lines (absl's "All log messages
before absl::InitializeLog()", oneDNN and CUDA notices) go straight to file descriptor 2
when it is imported and when its eager context starts, whatever ``TF_CPP_MIN_LOG_LEVEL``
says; MLflow logs warnings and, on a failed database commit, three tracebacks through its
own handler; Optuna and others raise Python warnings (``ExperimentalWarning``). bench
reports what matters in its own lines (a failure is one ``error:`` line), so :func:`install`
silences all of them: TensorFlow's import and start-up run with descriptor 2 on /dev/null
(wherever TensorFlow is first imported), the libraries' loggers and Python warnings are
dropped, MLflow leaves logging to bench. It marks the environment, so worker processes
(which import bench, then TensorFlow, before any code of theirs runs) do the same at
import. ``bench -vv`` installs none of it.

A leaf module: the standard library only, so ``bench/__init__.py`` can import it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator

#: Set by :func:`install`; a process importing bench with it set installs the same.
ENV = "BENCH_QUIET_LIBRARIES"
#: Loggers of the libraries bench uses ("py.warnings": Python warnings, once captured).
LIBRARIES = (
    "mlflow",
    "alembic",
    "sqlalchemy",
    "absl",
    "tensorflow",
    "keras",
    "h5py",
    "matplotlib",
    "urllib3",
    "git",
    "numexpr",
    "py.warnings",
)
SILENT = logging.CRITICAL + 1


def install() -> None:
    """Silence third-party output in this process and in the processes it starts."""
    os.environ[ENV] = "1"
    # MLflow's loggers then go through bench's handler (and its levels), not MLflow's own.
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.captureWarnings(True)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(SILENT)
    muted = any(isinstance(finder, _MutedImport) for finder in sys.meta_path)
    if "tensorflow" not in sys.modules and not muted:
        sys.meta_path.insert(0, _MutedImport())


@contextlib.contextmanager
def native_stderr_muted() -> Iterator[None]:
    """File descriptor 2 on /dev/null inside (what C++ code writes there is dropped)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _MutedImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, and loads it (and starts its eager context) muted."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders find it, and its submodules
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _MutedLoader(spec.loader)
        return spec


class _MutedLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with native_stderr_muted():
            self.loader.exec_module(module)
            with contextlib.suppress(
                Exception
            ):  # the eager context's start-up logs its notices once more
                module.constant(0.0)
