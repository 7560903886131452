"""Dot-segments in request paths: removed (RFC 3986 5.2.4) before routing, never let out.

`/api/v1/models/../credits` is `/api/v1/credits`: routing, the preset's route list and the
upstream all see that. A path that climbs out of the API prefix (`/api/v1/../../x`) is
refused with 400, so the server's credentials never reach a URL outside the API's base.
`%2e` counts as a dot (RFC 3986 6.2.2.2); a segment that only becomes a dot-segment once
`%2f` or a backslash is decoded (`..%2fcredits`) is refused as well, since an upstream or
gateway might decode it. Everything else in the raw path stays as the caller encoded it.
"""

from __future__ import annotations

from urllib.parse import unquote

# The prefix every API route is served under (`/v1` is an alias of it).
API_PREFIX = "/api/v1"
# Paths below these prefixes must stay below them.
API_PREFIXES = (API_PREFIX, "/v1")


class UnsafePath(ValueError):
    """The path leaves its API prefix, or hides a dot-segment behind an encoded separator."""


def _dots(segment: str) -> str:
    """The segment with `%2e` read as `.` (only dots matter here)."""
    if "%" not in segment:
        return segment
    return segment.replace("%2e", ".").replace("%2E", ".")


def _hides_dot_segment(segment: str) -> bool:
    """Whether decoding `%2f`, `%5c` or a backslash turns the segment into dot-segments."""
    decoded = unquote(segment).replace("\\", "/")
    return "/" in decoded and any(part in {".", ".."} for part in decoded.split("/"))


def remove_dot_segments(raw_path: str) -> str:
    """The path without `.` and `..` segments (RFC 3986 5.2.4), still percent-encoded.

    Raises UnsafePath when the result leaves the API prefix the path started under, or a
    segment hides a dot-segment behind an encoded separator.
    """
    if "." not in raw_path and "%" not in raw_path and "\\" not in raw_path:
        return raw_path  # the common case: nothing to remove
    segments = raw_path.split("/")[1:] if raw_path.startswith("/") else raw_path.split("/")
    kept: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        dots = _dots(segment)
        if dots in {".", ".."}:
            if dots == ".." and kept:
                kept.pop()
            if index == last:
                kept.append("")  # `/a/b/..` is `/a/`: the trailing slash stays
        elif _hides_dot_segment(segment):
            raise UnsafePath(f"The path segment {segment!r} hides a dot-segment.")
        else:
            kept.append(segment)
    normal = "/" + "/".join(kept)
    for prefix in API_PREFIXES:
        if _under(raw_path, prefix) and not _under(normal, prefix):
            raise UnsafePath(f"The path leaves {prefix} through dot-segments.")
    return normal


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
