"""Default values of the API's arguments, told apart from the same values passed on purpose.

Some arguments are refused together, as their flags are on the command line: `weights` with
a model of one's own, `max_maps` with `channels`. A default must not count as asked for,
yet `help()` should show it as the value it stands for: a marked default equals, hashes and
prints as its value.
"""

from __future__ import annotations


class Unsaid:
    """A default value, left as it is (the base of the marked types below)."""

    __slots__ = ()


class UnsaidStr(str, Unsaid):
    __slots__ = ()


class UnsaidInt(int, Unsaid):
    __slots__ = ()


def said(value) -> bool:
    """Whether `value` was passed, not left at a marked default."""
    return not isinstance(value, Unsaid)
