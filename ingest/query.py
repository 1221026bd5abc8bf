"""The callback's query parameters as a plain dict, without werkzeug's MultiDict on the hot path."""

from __future__ import annotations


def simple_query(query_string: str) -> dict[str, str] | None:
    """First value of each parameter, when nothing needs decoding; else None.

    Matches ``request.args`` (``parse_qsl(keep_blank_values=True)``, first value wins)
    for ASCII query strings without ``%`` or ``+``, which is what the Chat backend sends.
    Anything else returns None and the caller uses werkzeug's full parser.
    """
    if not query_string.isascii() or "%" in query_string or "+" in query_string:
        return None
    args: dict[str, str] = {}
    for piece in query_string.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            args.setdefault(name, value)
    return args
