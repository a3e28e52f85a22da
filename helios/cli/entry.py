"""`main`, the entry point of the `helios` script: run the typer app and turn every
failure into one line on stderr and a non-zero exit, never a traceback (`HELIOS_DEBUG=1`
or `-v` logs the details).
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from helios.cli.common import CLIError, app, take_global_options
from helios.client import one_line

log = logging.getLogger("helios.cli")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `helios` script: run the app; errors become one line."""
    command = typer.main.get_command(app)
    try:
        argv = take_global_options(list(sys.argv[1:] if argv is None else argv), os.environ)
        code = command.main(args=argv, prog_name="helios", standalone_mode=False)
    except CLIError as e:
        _fail(str(e), e.code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BaseExceptionGroup as eg:
        inner = _first(eg)
        if isinstance(inner, CLIError):
            _fail(str(inner), inner.code)
        log.debug("unexpected error", exc_info=eg)
        _fail(describe_error(inner), 1)
    except Exception as e:
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # a usage error
            if type(e).__name__ == "NoArgsIsHelpError":
                command.main(args=[*(argv or sys.argv[1:]), "--help"], prog_name="helios",
                             standalone_mode=False)
                sys.exit(0)
            _fail(one_line(e.format_message()), int(e.exit_code) or 2)
        log.debug("unexpected error", exc_info=True)
        _fail(describe_error(e), 1)
    sys.exit(code if isinstance(code, int) else 0)


#: errors whose message is written for the user already: shown without a type name
_PLAIN_ERRORS = ("NodeNameTaken", "StateDirLocked", "ZooKeeperUnreachable")


def describe_error(e: BaseException) -> str:
    """One line for an error that reached the top: the message alone where it was
    written for the user (an OSError's reason names its address), else `Type: message`."""
    if isinstance(e, OSError) and e.strerror:
        return one_line(e.strerror)
    if type(e).__name__ in _PLAIN_ERRORS:
        return one_line(str(e))
    return f"{type(e).__name__}: {one_line(str(e))}"


def _first(eg: BaseExceptionGroup) -> BaseException:
    e: BaseException = eg
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code or 1)
