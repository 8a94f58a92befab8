"""Hostile YAML shared by the property tests of every loader."""

from __future__ import annotations

#: nine levels of nine-fold aliases: ~387 million leaves once expanded, a few hundred bytes on disk
ALIAS_LADDER = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def alias_bomb(tail: str) -> str:
    """The alias ladder, then ``tail`` (which refers to the last level as ``*i``)."""
    return ALIAS_LADDER + tail
