"""Object metadata as the API server checks it: names, labels, annotations, timestamps."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from agentmedic_sandbox._emulator_errors import Obj
from agentmedic_sandbox._emulator_resources import (
    Resource,
)
from agentmedic_sandbox._emulator_schema import Cause

__all__ = ["GENERATE_ALPHABET", "metadata_causes", "name_causes", "now_rfc3339"]


def now_rfc3339(moment: datetime) -> str:
    """Kubernetes' timestamp format: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- metadata validation --------------------------------------------------------------------

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAMES = {"namespaces", "services"}  # names that must be DNS labels, not subdomains
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SimpleNameGenerator
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def name_causes(res: Resource, name: str) -> list[Cause]:
    if res.plural in _LABEL_NAMES:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            return [
                Cause(
                    "metadata.name",
                    "FieldValueInvalid",
                    f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 label '
                    "must consist of lower case alphanumeric characters or '-', and must "
                    "start and end with an alphanumeric character (e.g. 'my-name',  or "
                    "'123-abc', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                )
            ]
        return []
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            Cause(
                "metadata.name",
                "FieldValueInvalid",
                f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                "must consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character (e.g. 'example.com', regex "
                "used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        ]
    return []


def _qualified_name_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def metadata_causes(meta: Obj) -> list[Cause]:
    causes: list[Cause] = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [
            Cause(
                "metadata.labels",
                "FieldValueInvalid",
                "metadata.labels: Invalid value: must be a map of strings",
            )
        ]
    for key, value in labels.items():
        if not _qualified_name_ok(key):
            causes.append(
                Cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f'metadata.labels: Invalid value: "{key}": name part must consist '
                    "of alphanumeric characters, '-', '_' or '.', and must start and "
                    "end with an alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f"metadata.labels: Invalid value: {json.dumps(value)}: a valid "
                    "label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [
            *causes,
            Cause(
                "metadata.annotations",
                "FieldValueInvalid",
                "metadata.annotations: Invalid value: must be a map of strings",
            ),
        ]
    size = 0
    for key, value in annotations.items():
        if not _qualified_name_ok(key):
            causes.append(
                Cause(
                    "metadata.annotations",
                    "FieldValueInvalid",
                    f'metadata.annotations: Invalid value: "{key}": name part must '
                    "consist of alphanumeric characters, '-', '_' or '.', and must "
                    "start and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str):
            causes.append(
                Cause(
                    f"metadata.annotations[{key}]",
                    "FieldValueInvalid",
                    f"metadata.annotations[{key}]: Invalid value: must be a string",
                )
            )
            continue
        size += len(key) + len(value.encode())
    if size > _MAX_ANNOTATIONS_BYTES:
        causes.append(
            Cause(
                "metadata.annotations",
                "FieldValueTooLong",
                "metadata.annotations: Too long: must have at most 262144 bytes",
            )
        )
    return causes
