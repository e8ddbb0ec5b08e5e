"""The one way agentmedic reads YAML a person hands it: bounded in size, depth and aliases.

Every command that reads YAML (``validate``, ``backtest``, ``fleet``'s and ``run``'s catalog
overrides, ``run``'s settings file, the demo's example policies) goes through
:func:`load_documents` or :func:`load_file`. PyYAML alone would let a file exhaust memory
or the stack before any validation runs: a "billion laughs" document (anchors of anchors)
expands to gigabytes when anything walks it, 20,000 nested brackets overflow the
composer's recursion, and a 20 MB policy takes minutes and gigabytes to validate. Each
limit fails with a :class:`YAMLInputError` whose text is one line naming the file and the
fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_EXPANDED_NODES",
    "YAMLInputError",
    "load_documents",
    "load_file",
    "load_text",
    "read_text",
]

MAX_BYTES = 1024 * 1024
"""Largest YAML input read (1 MiB): a policy of the CRD's maximum size is well under it."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences; a Job template in a policy needs about 15."""
MAX_ALIASES = 100
"""Most ``*alias`` references in one document."""
MAX_EXPANDED_NODES = 100_000
"""Most nodes aliases may add when expanded (what walking, printing or dumping would see)."""


class YAMLInputError(ValueError):
    """YAML input that cannot be used; ``str()`` is one line starting with the source."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that counts depth and aliases while composing, before recursion grows."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self._source = source
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YAMLInputError(
                    self._source,
                    f"more than {MAX_ALIASES} YAML aliases (*name); write the values out",
                )
            return Composer.compose_node(self, parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YAMLInputError(
                    f"{self._source}:{mark.line + 1}:{mark.column + 1}",
                    f"nested deeper than {MAX_DEPTH} levels; flatten the document",
                )
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: Node) -> tuple[int, int]:
    """(distinct nodes, nodes once every alias is expanded), without expanding anything."""
    sizes: dict[int, int] = {}
    # Post-order without recursion: the depth is bounded, but this costs nothing extra.
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return len(sizes), sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _documents(text: str, source: str) -> Iterator[Any]:
    loader = _BoundedLoader(text, source)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                yield None
                continue
            distinct, expanded = _expanded_size(node)
            if expanded - distinct > MAX_EXPANDED_NODES:
                raise YAMLInputError(
                    source,
                    f"YAML aliases expand to {expanded:,} nodes (more than "
                    f"{MAX_EXPANDED_NODES:,} added by aliases); write the values out",
                )
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def load_text(text: str, source: str = "<input>") -> list[Any]:
    """Every document of ``text``; raise :class:`YAMLInputError` for bad or unbounded YAML."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YAMLInputError(source, f"is larger than {MAX_BYTES // 1024} KiB; split it")
    try:
        return list(_documents(text, source))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise YAMLInputError(where, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YAMLInputError(source, f"YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:  # the depth limit makes this unreachable; a line, never a trace
        raise YAMLInputError(source, "nested too deeply; flatten the document") from None


def read_text(path: Path | str) -> str:
    """A YAML file's text, refused with one line when it is missing, too large or binary."""
    path = Path(path)
    try:
        if path.is_dir():
            raise YAMLInputError(str(path), "is a directory; name a YAML file")
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except YAMLInputError:
        raise
    except FileNotFoundError:
        raise YAMLInputError(str(path), "no such file") from None
    except PermissionError:
        raise YAMLInputError(str(path), "permission denied") from None
    except OSError as exc:
        raise YAMLInputError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise YAMLInputError(str(path), f"is larger than {MAX_BYTES // 1024} KiB; split it")
    if b"\x00" in data:
        raise YAMLInputError(str(path), "is a binary file, not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YAMLInputError(
            str(path), f"is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None


def load_documents(path: Path | str) -> list[Any]:
    """Every document of a YAML file (``None`` for empty ones)."""
    return load_text(read_text(path), str(path))


def load_file(path: Path | str) -> Any:
    """The single document of a YAML file (``None`` when the file is empty)."""
    documents = [d for d in load_documents(path) if d is not None]
    if len(documents) > 1:
        raise YAMLInputError(
            str(path), f"holds {len(documents)} YAML documents; this file takes one"
        )
    return documents[0] if documents else None
