"""The limits that bound what reading one spec file may cost (specs from pull requests are untrusted).

A file beyond a limit is refused with its file:line, before it can take time or memory:

    MAX_SPEC_BYTES   size of one spec file, checked before it is read or parsed
    MAX_NODES        values in one document once every YAML alias is expanded (scalars, lists and
                     mappings each count one; an alias counts the full size of what it names), so
                     "billion laughs" documents stop after a few hundred events
    MAX_DEPTH        nesting of lists and mappings
    MAX_TEXT         characters of text (scalars and keys) in one document once every alias is
                     expanded: 50,000 values may each be an alias of a 1 MB string, which is
                     cheap to parse but gigabytes once anything serialises the data

Real specs are far below them: the example pipeline is 1.5 KB, about 120 values, 4 levels deep.
"""

from __future__ import annotations

MAX_SPEC_BYTES = 1024 * 1024
MAX_NODES = 50_000
MAX_DEPTH = 64
MAX_TEXT = 4 * MAX_SPEC_BYTES

# Part of the parse cache's identity: a cached document was accepted under these limits.
STAMP = f"{MAX_SPEC_BYTES}:{MAX_NODES}:{MAX_DEPTH}:{MAX_TEXT}"
