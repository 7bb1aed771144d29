"""How deep JSON and YAML input may nest, checked before it is parsed.

Python's parsers recurse once per level: a body of 100,000 ``[`` costs a ``RecursionError``
(a 500 and a traceback of hundreds of kilobytes in the log), and a body just shallow enough to
parse can still break whatever walks it next (validation, ``json.dumps``, the database's JSON
column). No site, layer or plan needs more than a dozen levels, so input is refused at
:data:`MAX_DEPTH`, with a 422 that says so.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import yaml

from gis.errors import FieldError, InvalidInput

#: The deepest nesting of arrays and objects (or YAML collections) accepted. A GeoJSON
#: FeatureCollection of MultiPolygons is 8 deep, a plan about 7.
MAX_DEPTH = 64

_NOT_MARK = bytes(b for b in range(256) if b not in b'"[]{}')
_CHUNK = 1 << 20


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in JSON text, found without parsing it.

    Linear in the size, and at C speed: escaped backslashes and quotes are cut out, every byte
    but a quote or a bracket is dropped, and numpy sums the running depth of the brackets that
    lie outside strings. Malformed text gets a number too; the parser refuses it afterwards.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw[:4] and json.detect_encoding(raw) != "utf-8":
        # In UTF-16 and UTF-32 a quote or bracket byte can be half of another character.
        raw = raw.decode(json.detect_encoding(raw), "replace").encode("utf-8", "surrogatepass")
    # Within a string a run of backslashes pairs up from its start, as JSON reads it; what is
    # left escapes the next character, and only an escaped quote matters here.
    marks = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_MARK)
    codes_all = np.frombuffer(marks, dtype=np.uint8)
    deepest, depth, quotes = 0, 0, 0
    for start in range(0, len(codes_all), _CHUNK):  # in slices: a few MB at a time
        codes = codes_all[start : start + _CHUNK]
        quote = codes == ord('"')
        outside = ((np.cumsum(quote, dtype=np.int64) + quotes) & 1) == 0
        opens = ((codes == ord("[")) | (codes == ord("{"))) & outside
        closes = ((codes == ord("]")) | (codes == ord("}"))) & outside
        running = np.cumsum(opens.view(np.int8) - closes.view(np.int8), dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth, quotes = int(running[-1]), quotes + int(quote.sum())
    return deepest


def check_json_depth(data: bytes | str, *, field: str = "body", max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON text nested deeper than ``max_depth`` with :class:`InvalidInput`."""
    depth = json_depth(data)
    if depth > max_depth:
        raise InvalidInput(
            f"the {field} is nested {depth} levels deep; at most {max_depth} are accepted",
            errors=[FieldError(field, f"nested more than {max_depth} levels deep")],
        )


class BoundedYamlLoader(yaml.SafeLoader):
    """YAML's safe loader, with no aliases and at most :data:`MAX_DEPTH` levels.

    An alias (``*name``) lets a few bytes stand for gigabytes ("billion laughs"); plans never
    need one. The composer is the only part of PyYAML that recurses per level, so the depth is
    counted there, before Python's own limit is reached.
    """

    max_depth = MAX_DEPTH

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not accepted")
        if self._depth >= self.max_depth:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped stub
            raise NestedTooDeep(
                f"nested more than {self.max_depth} levels deep "
                f"(line {mark.line + 1}, column {mark.column + 1})"
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class NestedTooDeep(yaml.YAMLError):
    """YAML deeper than the loader allows."""
