"""PATCH semantics of the Kubernetes API server, by content type.

* ``application/merge-patch+json``: RFC 7386 — objects merge recursively, ``null`` deletes
  a key, anything else (lists included) replaces.
* ``application/strategic-merge-patch+json``: like a merge patch, but lists of built-in kinds
  that Kubernetes declares with a merge key (containers and env by ``name``, container ports
  by ``containerPort``, volume mounts by ``mountPath`` …) merge item by item; the directives
  ``$patch: delete|replace|merge``, ``$deleteFromPrimitiveList/<field>`` and
  ``$setElementOrder/<field>`` are understood; ``$retainKeys`` is ignored.
* ``application/json-patch+json``: RFC 6902 with RFC 6901 pointers (``~0``, ``~1``).

All functions are pure: they never modify their arguments and return new structures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "PatchError",
    "clone",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_key",
    "strategic_merge_patch",
]

JSON = Any
_T = TypeVar("_T")
MergeKeyFn = Callable[[tuple[str, ...]], str | None]


def clone(value: _T) -> _T:
    """A deep copy of JSON data (dicts, lists, scalars), several times faster than
    ``copy.deepcopy``, which matters when the store holds ten thousand objects."""
    if isinstance(value, dict):
        return {  # type: ignore[return-value]
            k: clone(v) if isinstance(v, dict | list) else v for k, v in value.items()
        }
    if isinstance(value, list):
        return [clone(v) if isinstance(v, dict | list) else v for v in value]  # type: ignore[return-value]
    return value


class PatchError(Exception):
    """A patch that cannot be applied; ``status`` is the HTTP code the API server answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- RFC 7386 -------------------------------------------------------------------------------


def json_merge_patch(target: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch to ``target`` and return the result."""
    if not isinstance(patch, dict):
        return clone(patch)
    result: dict[str, Any] = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# --- strategic merge ------------------------------------------------------------------------

# Merge keys of the lists Kubernetes declares with `patchStrategy: merge`, keyed by
# (list field, field of the object that holds the list). `*` means any holder. Sets of
# primitives (finalizers) merge as sets; every other list is replaced, as by the API server.
_MERGE_KEYS: dict[tuple[str, str], str] = {
    ("containers", "*"): "name",
    ("initContainers", "*"): "name",
    ("ephemeralContainers", "*"): "name",
    ("env", "*"): "name",
    ("volumes", "*"): "name",
    ("volumeMounts", "*"): "mountPath",
    ("volumeDevices", "*"): "devicePath",
    ("imagePullSecrets", "*"): "name",
    ("hostAliases", "*"): "ip",
    ("conditions", "*"): "type",
    ("ownerReferences", "metadata"): "uid",
    ("topologySpreadConstraints", "*"): "topologyKey",
    ("resourceClaims", "*"): "name",
    # A container's ports merge by containerPort; a Service's by port.
    ("ports", "containers"): "containerPort",
    ("ports", "initContainers"): "containerPort",
    ("ports", "ephemeralContainers"): "containerPort",
    ("ports", "spec"): "port",
}
_PRIMITIVE_SETS: set[tuple[str, str]] = {("finalizers", "metadata")}
_SET_MARKER = "<set>"


def strategic_merge_key(path: tuple[str, ...]) -> str | None:
    """The merge key of the list at ``path`` (field names only, list indexes left out).

    Returns ``"<set>"`` for lists of primitives merged as sets, ``None`` for replaced lists.
    """
    if not path:
        return None
    field = path[-1]
    holder = path[-2] if len(path) > 1 else ""
    if (field, holder) in _PRIMITIVE_SETS:
        return _SET_MARKER
    return _MERGE_KEYS.get((field, holder)) or _MERGE_KEYS.get((field, "*"))


def strategic_merge_patch(
    target: JSON, patch: JSON, merge_key: MergeKeyFn = strategic_merge_key
) -> JSON:
    """Apply a strategic merge patch to ``target`` and return the result."""
    if not isinstance(patch, dict):
        raise PatchError(400, "a strategic merge patch must be a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch, (), merge_key)


def _smp_map(
    target: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...], merge_key: MergeKeyFn
) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        stripped: dict[str, Any] = _strip_directives(
            {k: v for k, v in patch.items() if k != "$patch"}
        )
        return stripped
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise PatchError(400, f"unknown patch directive {directive!r} at {'.'.join(path)}")
    result = clone(target)
    deletions: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            if not isinstance(value, list):
                raise PatchError(400, f"{key} must be a list")
            deletions[key.split("/", 1)[1]] = value
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $patch, $retainKeys, $setElementOrder/..., $deleteFromPrimitiveList/...
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
            continue
        sub = (*path, key)
        current = result.get(key)
        if isinstance(value, dict):
            result[key] = _smp_map(
                current if isinstance(current, dict) else {}, value, sub, merge_key
            )
        elif isinstance(value, list):
            result[key] = _smp_list(
                current if isinstance(current, list) else [], value, sub, merge_key
            )
        else:
            result[key] = clone(value)
    for key, removed in deletions.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in removed]
    return result


def _smp_list(
    target: list[Any], patch: list[Any], path: tuple[str, ...], merge_key: MergeKeyFn
) -> list[Any]:
    key = merge_key(path)
    # `[{"$patch": "replace"}, ...items]` replaces the whole list with the remaining items.
    if any(isinstance(p, dict) and p.get("$patch") == "replace" and len(p) == 1 for p in patch):
        return [
            _strip_directives(p)
            for p in patch
            if not (isinstance(p, dict) and p.get("$patch") == "replace" and len(p) == 1)
        ]
    if key is None:
        return _strip_directives(patch)  # type: ignore[no-any-return]
    if key == _SET_MARKER:
        result = list(target)
        for item in patch:
            if item not in result:
                result.append(clone(item))
        return result
    merged = [clone(t) for t in target]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(
                422,
                f"{'.'.join(path)}: map in a list merged by {key!r} does not contain the key",
            )
        index = next(
            (i for i, t in enumerate(merged) if isinstance(t, dict) and t.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(_strip_directives(item))
        else:
            merged[index] = _smp_map(merged[index], item, path, merge_key)
    return merged


def _strip_directives(value: JSON) -> JSON:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return clone(value)


# --- RFC 6902 -------------------------------------------------------------------------------


def json_patch(target: JSON, ops: JSON) -> JSON:
    """Apply an RFC 6902 JSON patch to ``target`` and return the result.

    Malformed patches raise ``PatchError(400)``; operations that cannot apply (a failed
    ``test``, a missing path) raise ``PatchError(422)``, as the API server answers.
    """
    if not isinstance(ops, list):
        raise PatchError(400, "a JSON patch must be a list of operations")
    doc = clone(target)
    for number, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(400, f"operation {number} needs 'op' and 'path'")
        name = op["op"]
        path = _pointer(op["path"])
        if name == "add":
            doc = _add(doc, path, clone(_need(op, "value")))
        elif name == "remove":
            doc, _ = _remove(doc, path)
        elif name == "replace":
            _get(doc, path)
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, clone(_need(op, "value")))
        elif name == "move":
            source = _pointer(_need(op, "from"))
            if path[: len(source)] == source and len(path) > len(source):
                raise PatchError(422, f"cannot move {op['from']} into its own child {op['path']}")
            doc, value = _remove(doc, source)
            doc = _add(doc, path, value)
        elif name == "copy":
            value = clone(_get(doc, _pointer(_need(op, "from"))))
            doc = _add(doc, path, value)
        elif name == "test":
            expected = _need(op, "value")
            actual = _get(doc, path)
            if not _json_equal(actual, expected):
                raise PatchError(
                    422,
                    f"testing value {op['path']} failed: expected {expected!r}, found {actual!r}",
                )
        else:
            raise PatchError(400, f"unknown JSON patch operation {name!r}")
    return doc


def _need(op: dict[str, Any], field: str) -> Any:
    if field not in op:
        raise PatchError(400, f"{op['op']} operation at {op['path']!r} needs {field!r}")
    return op[field]


def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise PatchError(400, f"invalid JSON pointer {text!r}")
    if text == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(422, f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise PatchError(422, f"array index {index} out of bounds")
    return index


def _parent(doc: Any, path: list[str]) -> Any:
    node = doc
    for token in path[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(422, f"path /{'/'.join(path)} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError(422, f"path /{'/'.join(path)} does not exist")
    return node


def _get(doc: Any, path: list[str]) -> Any:
    if not path:
        return doc
    parent = _parent(doc, path)
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(422, f"path /{'/'.join(path)} does not exist")
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(parent, token, for_add=False)]
    raise PatchError(422, f"path /{'/'.join(path)} does not exist")


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _parent(doc, path)
    token = path[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, for_add=True), value)
    else:
        raise PatchError(422, f"path /{'/'.join(path)} does not exist")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise PatchError(422, "cannot remove the whole document")
    parent = _parent(doc, path)
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(422, f"path /{'/'.join(path)} does not exist")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, token, for_add=False))
    raise PatchError(422, f"path /{'/'.join(path)} does not exist")


def _json_equal(a: Any, b: Any) -> bool:
    # JSON has one number type: 1 == 1.0, but True is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)
