"""The command as a process: one error line instead of a traceback, logging set up for a
terminal, TensorFlow imported quietly."""

from __future__ import annotations

import logging
import os
import sys

import click

from bench import stopping, xla
from bench.errors import BenchError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BenchGroup(click.Group):
    """Turns every expected error into one line on stderr and an exit code."""

    def main(self, *args, **kwargs):  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.ClickException as exc:
            _error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            _error("interrupted; open runs were closed as KILLED" if interrupted else "aborted")
            sys.exit(EXIT_INTERRUPTED)
        except BenchError as exc:
            _error(str(exc))
            sys.exit(getattr(exc, "exit_code", EXIT_ERROR))
        except KeyboardInterrupt:
            _error("interrupted; open runs were closed as KILLED")
            sys.exit(EXIT_INTERRUPTED)
        except (SystemExit, click.exceptions.Exit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or a failure nobody foresaw: still one line
            if logging.getLogger("bench").isEnabledFor(logging.DEBUG):
                logging.getLogger("bench").exception("unexpected failure")
            text = str(exc).strip().splitlines()
            first = text[0] if text else ""
            _error(f"unexpected {type(exc).__name__}: {first} (bench -v shows the traceback)")
            sys.exit(EXIT_ERROR)
        sys.exit(rv if isinstance(rv, int) else 0)


def _error(message: str) -> None:
    """The one error line, on stderr, every password in it masked."""
    from bench.store.uri import redact

    lines = redact(message).strip().splitlines() or [""]
    click.echo(f"error: {lines[0]}", err=True)


class _Redacting(logging.Filter):
    """Masks passwords in every log line (URIs quoted in warnings and library messages)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bench.store.uri import redact

        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def setup_logging(verbose: int) -> None:
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU-only machines) hides progress.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose > 1 else "3")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose > 1 else "WARNING")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_Redacting())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    logging.getLogger("bench").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("mlflow", "alembic", "absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)
    if verbose <= 1:
        from bench import quiet

        quiet.install()  # no third-party line reaches the output, in workers neither (bench.quiet)


def import_tensorflow() -> None:
    """Import TensorFlow (seconds; nothing is open yet, so a signal meanwhile stops at once).
    A bad ``$BENCH_XLA`` stops the command here, before anything is trained or recorded."""
    xla.setting()
    verbose = (click.get_current_context().obj or {}).get("verbose", 0)
    with stopping.at_once():
        _load_tensorflow(verbose)


def _load_tensorflow(verbose: int) -> None:
    """Import TensorFlow with its C++ start-up logging (CUDA probing, oneDNN notices) muted.

    Those lines go straight to file descriptor 2, bypassing Python's logging; they are
    noise on a CPU-only machine and bury the progress lines. ``-vv`` shows them.
    """
    if verbose > 1:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.constant(0.0)  # the eager context's start-up logs its notices once more
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
