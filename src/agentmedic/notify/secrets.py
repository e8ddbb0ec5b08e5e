"""Secret values that do not leak: an opaque holder and a redactor for log records.

A Slack incoming-webhook URL is a credential (its path is the token), so is a webhook
URL, a PagerDuty routing key and an HMAC key. They travel as :class:`Secret`, whose
``repr`` and ``str`` hide the value, and are revealed only at the moment a request is
built. httpx logs every request's full URL at INFO on the ``httpx`` logger; the
:func:`guard_http_logs` filter cuts that URL to its scheme and host, and, as a second line,
hides any registered secret in every record of that logger, so an operator running with
INFO logging does not print webhook tokens.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["REDACTED", "Secret", "SecretText", "guard_http_logs", "redact"]

REDACTED = "***"
"""What a secret value is replaced with in any text the notify layer emits."""

# Fragments shorter than this are too likely to match innocent text (a path of "/").
_MIN_FRAGMENT = 8
# Enough for every channel of a large installation; the oldest are forgotten first.
_MAX_REGISTERED = 4096
# httpx logs "HTTP Request: POST <url> ..." here. httpcore's debug traces show only the
# method, host and port, and a filter on a parent logger would not see its children's records.
_HTTP_LOGGERS = ("httpx",)


class Secret:
    """A credential. ``repr``/``str`` never show it; :meth:`reveal` does, on purpose."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself; call it only where a request is built."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the value out; nothing in agentmedic needs it.
        raise TypeError("a Secret cannot be pickled")


SecretText = str | Secret
"""What :func:`redact` hides: a fragment (``str``, hidden when at least 8 characters long) or a
known credential (:class:`Secret`, hidden at any length)."""

# Characters that continue a token: a short secret is hidden only as a whole token, so that
# a password "admin" does not turn "administrator" into "***istrator".
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-]")


def redact(text: str, secrets: Iterable[SecretText]) -> str:
    """Hide every secret of ``secrets`` in ``text``, whatever its case.

    - a fragment of 8 characters or more is hidden wherever it occurs; one without ``/``
      (a token, a key, a password) is also hidden when it appears cut short, from its
      first 8 characters up to the end of a token (a receiver quoting "token abcdefgh1234…");
    - a known credential (:class:`Secret`) shorter than 8 characters is hidden where it
      stands as a whole token, so that ``pw1`` hides in "pw1 rejected" but "pw12" stays.
    """
    long_: set[str] = set()
    short: set[str] = set()
    for item in secrets:
        value = item.reveal() if isinstance(item, Secret) else item
        if len(value) >= _MIN_FRAGMENT:
            long_.add(value)
        elif isinstance(item, Secret) and value.strip():
            short.add(value)
    # Longest first, so a URL is replaced whole before its path would be.
    for fragment in sorted(long_, key=len, reverse=True):
        text = _hide(text, fragment, prefixes="/" not in fragment)
    for secret in sorted(short, key=len, reverse=True):
        pattern = rf"(?<![A-Za-z0-9_\-]){re.escape(secret)}(?![A-Za-z0-9_\-])"
        text = re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)
    return text


def _hide(text: str, fragment: str, *, prefixes: bool) -> str:
    folded, target = text.casefold(), fragment.casefold()
    if len(folded) != len(text) or len(target) != len(fragment):
        # Case folding changed lengths (ß → ss): fall back to an exact, then a regex match.
        return re.sub(re.escape(fragment), REDACTED, text, flags=re.IGNORECASE)
    head = target[:_MIN_FRAGMENT]
    out: list[str] = []
    start = 0
    at = folded.find(head)
    while at >= 0:
        length = _MIN_FRAGMENT
        while (
            length < len(target)
            and at + length < len(folded)
            and folded[at + length] == target[length]
        ):
            length += 1
        end = at + length
        whole = length == len(target)
        cut_short = prefixes and (end == len(text) or not _TOKEN_CHAR.match(text[end]))
        if whole or cut_short:
            out += [text[start:at], REDACTED]
            start = end
            at = folded.find(head, end)
        else:
            at = folded.find(head, at + 1)
    out.append(text[start:])
    return "".join(out)


class _RedactingFilter(logging.Filter):
    """Rewrites log records of the HTTP stack that contain a registered secret fragment."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._fragments: OrderedDict[SecretText, None] = OrderedDict()

    def register(self, fragments: Iterable[SecretText]) -> None:
        with self._lock:
            for fragment in fragments:
                value = fragment.reveal() if isinstance(fragment, Secret) else fragment
                if len(value) < _MIN_FRAGMENT and not isinstance(fragment, Secret):
                    continue
                self._fragments[fragment] = None
                self._fragments.move_to_end(fragment)
            while len(self._fragments) > _MAX_REGISTERED:
                self._fragments.popitem(last=False)

    def filter(self, record: logging.LogRecord) -> bool:
        # First line: httpx's request line keeps only the URL's scheme and host, so a token in
        # a path or query never reaches the text, registered or not.
        if (
            isinstance(record.msg, str)
            and record.msg.startswith("HTTP Request:")
            and isinstance(record.args, tuple)
            and len(record.args) >= 2
        ):
            record.args = (record.args[0], _origin(record.args[1]), *record.args[2:])
        with self._lock:
            fragments = list(self._fragments)
        if not fragments:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to fix; let logging report it
            return True
        cleaned = redact(text, fragments)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


def _origin(url: object) -> str:
    """``https://host:port/…`` of a URL: no credentials, path or query."""
    try:
        parts = urllib.parse.urlsplit(str(url))
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}/…"


_FILTER = _RedactingFilter()
_installed = False
_install_lock = threading.Lock()


def guard_http_logs(fragments: Iterable[SecretText]) -> None:
    """Keep these secret fragments out of the records httpx logs.

    Installs one filter on the ``httpx`` logger the first time it is called (it stays for the
    life of the process) and adds the fragments to what it redacts.
    """
    global _installed
    with _install_lock:
        if not _installed:
            for name in _HTTP_LOGGERS:
                logging.getLogger(name).addFilter(_FILTER)
            _installed = True
    _FILTER.register(fragments)
