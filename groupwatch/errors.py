"""Turning expected failures into one clear CLI error line instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import click
from pydantic import ValidationError

P = ParamSpec("P")
T = TypeVar("T")


class UserFacingError(RuntimeError):
    """Base class of errors whose message is meant for the operator as it is."""


def clear_errors(*kinds: type[BaseException]) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a click command: listed exceptions (and bad settings) become ``error: …``."""

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return func(*args, **kwargs)
            except ValidationError as exc:
                raise click.ClickException(f"invalid settings: {exc}") from exc
            except Exception as exc:
                if isinstance(exc, (UserFacingError, *kinds)):
                    raise click.ClickException(str(exc)) from exc
                raise

        return wrapper

    return decorate
