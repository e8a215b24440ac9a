"""The ini file -> :mod:`router.app.settings`, or every error at once.

:func:`load` reads one file and returns its settings and warnings, or raises
:class:`ConfigErrors` listing every problem as ``section.key: message`` (``peer 2001:db8::1.v_bu:
...``, ``profile alice@example.org.hoa: ...``). It only reads the file: nothing is opened, bound
or created, so ``netlmm check-config`` and ``netlmm run`` fail the same way before any fd exists.

Rules:

1. Every section and every key has to be known (:data:`KEYS`, from the schema): a typo is an
   error, never a key silently ignored. There is no ``[DEFAULT]`` section and no interpolation;
   ``;`` and ``#`` start a comment, also after a value (after whitespace).
2. A bad value is reported and reading goes on, so one run lists every problem; checks that
   relate several values run after parsing, only on the values that parsed.
3. A warning is a value that is legal but risky (a lifetime rounded to 4-second units, a tunnel
   MTU that refuses full-size packets, a lease that outlasts the binding, ...): the settings are
   still returned, with the warnings beside them, as ``section.key: message``.

The modules: :mod:`~router.app.config.schema` (every key once: parser, default, help, roles),
:mod:`~router.app.config.parsers` (one value each), :mod:`~router.app.config.sections` (a
section read through the schema), :mod:`~router.app.config.checks` (what relates several
values), :mod:`~router.app.config.loader` (the order of it all, and the settings), and
:mod:`~router.app.config.docs` (the documentation of each key in ``etc/dmpa.ini`` and
``etc/dlmap.ini``, rendered from the schema).
"""

from router.app.config.loader import load, loads, summary
from router.app.config.schema import (
    FIRST_PBU_TIMEOUT,
    KEYS,
    LIMITS_DLMAP,
    LIMITS_DMPA,
    MAX_LIFETIME,
    MAX_TUNNEL_MTU,
    MIN_TUNNEL_MTU,
    SCHEMA,
)
from router.app.config.sections import ConfigErrors

__all__ = [
    "FIRST_PBU_TIMEOUT",
    "KEYS",
    "LIMITS_DLMAP",
    "LIMITS_DMPA",
    "MAX_LIFETIME",
    "MAX_TUNNEL_MTU",
    "MIN_TUNNEL_MTU",
    "SCHEMA",
    "ConfigErrors",
    "load",
    "loads",
    "summary",
]
