"""What each channel was told, so that nobody is told twice or flooded: :class:`DeliveryLedger`.

Pure bookkeeping, no I/O; the dispatcher asks it before each send and tells it after.

Rules, per channel of a policy (``namespace/policy/channel``):

- **Severity**: a firing message below the channel's ``minSeverity`` is not sent.
- **Dedup**: a firing message for an episode the channel was told about less than
  ``renotifyAfter`` ago is dropped; after that it is sent again as a reminder. A resolve
  is sent once.
- **Resolve follows firing**: a resolve goes only to channels that were sent the episode
  as firing (and not yet resolved). Such resolves are never rate-limited: each closes
  something this channel was told, so at most one follows each firing message, and
  dropping one would leave a PagerDuty incident open.
- **Rate limit**: at most ``maxPerHour`` firing messages in any sliding hour. The rest
  are counted; the next message the channel gets says how many were held back. A shared
  channel (an entry with ``channelRef``: ``ResolvedChannel.shared_key``) counts the sends of
  every policy that names it against its one ``maxPerHour``; each policy keeps its own
  episodes, dedup and held-back count, so that its state is still persisted with it.
- **Re-posts**: a channel with a ``repost_interval`` (Alertmanager) forgets a firing alert
  that is not said again, so a still-firing episode is re-posted at that interval, past
  the rate limit and without counting toward it.

A send is reserved by :meth:`DeliveryLedger.admit` (so a concurrent duplicate is dropped)
and confirmed or undone by :meth:`DeliveryLedger.settle`: a failed delivery leaves no
trace, so a later attempt sends it.

The state is small and bounded (the last hour's send times, at most
``max_episodes`` episodes per channel, at most ``max_channels`` channels) and round-trips
through JSON (:meth:`DeliveryLedger.to_json`, :meth:`DeliveryLedger.from_json`) so the
operator can persist it and a restart never re-pages.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.notify.channels import ResolvedChannel
from agentmedic.notify.message import (
    Delivery,
    Message,
    MessageState,
    Overflow,
    format_time,
    severity_at_least,
)
from agentmedic.notify.report import Reason

__all__ = ["STATE_VERSION", "Admission", "DeliveryLedger", "Suppression", "channel_key"]

STATE_VERSION = 1
"""Version of the JSON form; another version is refused by :meth:`DeliveryLedger.from_json`."""

_HOUR = 3600.0


def channel_key(message: Message, channel: ResolvedChannel) -> str:
    """The ledger's key for a channel of a policy: ``namespace/policy/channel``."""
    return f"{message.policy_namespace}/{message.policy_name}/{channel.name}"


def _ts(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class _Episode:
    firing: float | None = None
    """When a firing message for the episode was last sent."""
    resolved: float | None = None
    """When the resolve was sent."""

    @property
    def touched(self) -> float:
        return max(t for t in (self.firing, self.resolved, 0.0) if t is not None)


@dataclass
class _Channel:
    sent: deque[float] = field(default_factory=deque)
    overflow: int = 0
    overflow_since: float | None = None
    episodes: OrderedDict[str, _Episode] = field(default_factory=OrderedDict)
    touched: float = 0.0
    shared: str | None = None
    """The shared channel (NotificationChannel, ClusterNotificationChannel) this policy's
    entry names: its maxPerHour counts the sends of every policy naming it."""

    def empty(self) -> bool:
        return not self.sent and not self.overflow and not self.episodes


@dataclass(frozen=True, slots=True)
class Suppression:
    """The message is not to be sent to this channel, and why."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Admission:
    """The message may be sent to this channel; settle it with :meth:`DeliveryLedger.settle`."""

    key: str
    episode: str
    state: MessageState
    delivery: Delivery
    """Reminder flag and overflow summary to render into the message."""
    sent_ts: float
    previous: _Episode | None
    overflow: Overflow | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, so a send reserved by one operator can be settled by another."""
        out: dict[str, Any] = {
            "key": self.key,
            "episode": self.episode,
            "state": self.state.value,
            "sentTs": self.sent_ts,
            "repeat": self.delivery.repeat,
        }
        if self.previous is not None:
            out["previous"] = {
                k: v
                for k, v in (("firing", self.previous.firing), ("resolved", self.previous.resolved))
                if v is not None
            }
        if self.overflow is not None:
            out["overflow"] = {"count": self.overflow.count, "since": _ts(self.overflow.since)}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Admission:
        """Read what :meth:`to_json` wrote (``ValueError`` when it is not that form)."""
        try:
            sent_ts = _number(data["sentTs"])
            if sent_ts is None or not isinstance(data["key"], str):
                raise ValueError("sentTs and key")
            previous = None
            if isinstance(data.get("previous"), Mapping):
                p = data["previous"]
                previous = _Episode(_number(p.get("firing")), _number(p.get("resolved")))
            overflow = None
            if isinstance(data.get("overflow"), Mapping):
                count, since = (
                    _number(data["overflow"].get("count")),
                    _number(data["overflow"].get("since")),
                )
                if count is not None and since is not None:
                    overflow = Overflow(int(count), _dt(since))
            return cls(
                key=data["key"],
                episode=str(data["episode"]),
                state=MessageState(data["state"]),
                delivery=Delivery(_dt(sent_ts), repeat=bool(data.get("repeat")), overflow=overflow),
                sent_ts=sent_ts,
                previous=previous,
                overflow=overflow,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a reserved delivery: {exc}") from None


class DeliveryLedger:
    """Dedup, renotify and rate-limit state for every channel of every policy."""

    def __init__(
        self,
        *,
        max_episodes: int = 256,
        max_channels: int = 1024,
        resolved_retention: timedelta = timedelta(hours=24),
        stale_after: timedelta = timedelta(days=7),
    ) -> None:
        """Bounds: episodes remembered per channel and channels remembered (least recently
        used go first), how long a resolved episode is remembered (to drop a repeated
        resolve), and after how long without any message a firing episode is forgotten."""
        self._max_episodes = max_episodes
        self._max_channels = max_channels
        self._resolved_retention = resolved_retention.total_seconds()
        self._stale_after = stale_after.total_seconds()
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._groups: dict[str, set[str]] = {}
        """Shared channel → the keys of the policies' entries that name it."""

    # ------------------------------------------------------------------ decisions

    def admit(
        self, channel: ResolvedChannel, message: Message, now: datetime
    ) -> Admission | Suppression:
        """Decide whether ``message`` goes to ``channel`` at ``now``; reserve the send if so."""
        key = channel_key(message, channel)
        t = _ts(now)
        record = self._channels.get(key)
        if record is not None:
            self._prune_channel(record, t, channel.max_per_hour)
        episode = record.episodes.get(message.episode) if record is not None else None

        keepalive = False
        if message.state is MessageState.RESOLVED:
            unresolvable = _unresolvable(episode)
            if unresolvable is not None:
                return unresolvable
            repeat = False
        else:
            if not severity_at_least(message.severity, channel.min_severity):
                return Suppression(
                    Reason.BELOW_MIN_SEVERITY,
                    f"severity {message.severity.value} is below the channel's minSeverity "
                    f"{channel.min_severity.value}",
                )
            renotify = channel.renotify_after.total_seconds()
            keepalive = channel.repost_interval is not None
            if keepalive:
                # The engine paces re-posts at the channel's interval, a cycle boundary
                # later or earlier than this clock says: drop only what comes much sooner.
                renotify /= 2
            last = episode.firing if episode is not None and episode.resolved is None else None
            if last is not None and t - last < renotify:
                return Suppression(
                    Reason.DUPLICATE,
                    f"already sent at {format_time(_dt(last))}; repeated after renotifyAfter "
                    f"({format_duration(channel.renotify_after)})",
                )
            repeat = last is not None
            # A re-post keeps an alert the receiver was already given alive: like a
            # resolve, it is never rate-limited and does not count toward maxPerHour.
            keepalive = keepalive and repeat
            limited = self._sent(key, record, channel, t) >= channel.max_per_hour
            if limited and not keepalive:
                if record is None:
                    record = self._record(key, channel)
                if record.overflow == 0:
                    record.overflow_since = t
                record.overflow += 1
                return Suppression(
                    Reason.RATE_LIMITED,
                    f"maxPerHour ({channel.max_per_hour}) reached; counted and summarised in "
                    "the next message",
                )

        if record is None:
            record = self._record(key, channel)
        previous = None if episode is None else _Episode(episode.firing, episode.resolved)
        overflow = None
        if record.overflow and record.overflow_since is not None:
            overflow = Overflow(record.overflow, _dt(record.overflow_since))
            record.overflow, record.overflow_since = 0, None
        if episode is None:
            episode = record.episodes[message.episode] = _Episode()
        if message.state is MessageState.RESOLVED:
            episode.resolved = t
        else:
            episode.firing, episode.resolved = t, None
            if not keepalive:
                record.sent.append(t)
        self._touch(key, record, message.episode, t)
        return Admission(
            key=key,
            episode=message.episode,
            state=message.state,
            delivery=Delivery(now, repeat=repeat, overflow=overflow),
            sent_ts=t,
            previous=previous,
            overflow=overflow,
        )

    def _record(self, key: str, channel: ResolvedChannel) -> _Channel:
        record = self._channels[key] = _Channel(shared=channel.shared_key)
        if channel.shared_key is not None:
            self._groups.setdefault(channel.shared_key, set()).add(key)
        return record

    def _sent(self, key: str, record: _Channel | None, channel: ResolvedChannel, t: float) -> int:
        """Firing messages sent in the last hour on this channel: the policy's own, or for a
        shared channel those of every policy naming it."""
        if channel.shared_key is None:
            return len(record.sent) if record is not None else 0
        total = 0
        for other in {key, *self._groups.get(channel.shared_key, ())}:
            rec = self._channels.get(other)
            if rec is not None and rec.shared == channel.shared_key:
                self._prune_channel(rec, t, channel.max_per_hour)
                total += len(rec.sent)
        return total

    def settle(self, admission: Admission, *, delivered: bool) -> None:
        """Confirm a reserved send, or undo it when the message did not get through."""
        if delivered:
            return
        record = self._channels.get(admission.key)
        if record is None:
            return
        if admission.state is MessageState.FIRING:
            with contextlib.suppress(ValueError):  # already pruned out of the hour
                record.sent.remove(admission.sent_ts)
        if admission.previous is None:
            record.episodes.pop(admission.episode, None)
        else:
            record.episodes[admission.episode] = admission.previous
        if admission.overflow is not None:
            # Merge back: more may have been held back while this send was in flight.
            since = admission.overflow.since.timestamp()
            record.overflow += admission.overflow.count
            record.overflow_since = min(since, record.overflow_since or since)
        if record.empty():
            self._channels.pop(admission.key, None)

    # ------------------------------------------------------------------ bounds

    def _touch(self, key: str, record: _Channel, episode: str, t: float) -> None:
        record.touched = t
        record.episodes.move_to_end(episode)
        while len(record.episodes) > self._max_episodes:
            # Least recently used first; a resolved episode is only a dedup memo, so it
            # goes before any firing one.
            victim = next(
                (e for e, rec in record.episodes.items() if rec.resolved is not None),
                next(iter(record.episodes)),
            )
            del record.episodes[victim]
        self._channels.move_to_end(key)
        while len(self._channels) > self._max_channels:
            self._channels.popitem(last=False)

    def _prune_channel(self, record: _Channel, t: float, max_per_hour: int | None) -> None:
        while record.sent and t - record.sent[0] >= _HOUR:
            record.sent.popleft()
        if max_per_hour is not None:
            # Only the newest maxPerHour times can decide anything.
            while len(record.sent) > max_per_hour:
                record.sent.popleft()
        for name in [
            name
            for name, ep in record.episodes.items()
            if (ep.resolved is not None and t - ep.resolved > self._resolved_retention)
            or t - ep.touched > self._stale_after
        ]:
            del record.episodes[name]

    def prune(self, now: datetime) -> None:
        """Forget what can no longer matter at ``now``."""
        t = _ts(now)
        for key in list(self._channels):
            record = self._channels[key]
            self._prune_channel(record, t, None)
            if record.empty():
                del self._channels[key]

    def __len__(self) -> int:
        """How many channels have state."""
        return len(self._channels)

    # ------------------------------------------------------------------ persistence

    def export_policy(self, namespace: str, name: str, now: datetime) -> dict[str, Any]:
        """The state of one policy's channels (pruned at ``now``), as :meth:`to_json`."""
        prefix = f"{namespace}/{name}/"
        t = _ts(now)
        for key in [k for k in self._channels if k.startswith(prefix)]:
            record = self._channels[key]
            self._prune_channel(record, t, None)
            if record.empty():
                del self._channels[key]
        whole = self.to_json()
        whole["channels"] = {k: v for k, v in whole["channels"].items() if k.startswith(prefix)}
        return whole

    def import_policy(self, namespace: str, name: str, data: Mapping[str, Any] | None) -> None:
        """Replace one policy's channels with those of :meth:`export_policy`'s output (none
        when ``data`` is None); ``ValueError`` when ``data`` is not that form."""
        prefix = f"{namespace}/{name}/"
        loaded = None if data is None else DeliveryLedger.from_json(data)
        for key in [k for k in self._channels if k.startswith(prefix)]:
            del self._channels[key]
        if loaded is not None:
            for key, record in loaded._channels.items():
                if key.startswith(prefix):
                    self._channels[key] = record
                    if record.shared is not None:
                        self._groups.setdefault(record.shared, set()).add(key)
        while len(self._channels) > self._max_channels:
            self._channels.popitem(last=False)

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The state as a JSON-ready dict (pruned first when ``now`` is given)."""
        if now is not None:
            self.prune(now)
        channels: dict[str, Any] = {}
        for key, record in self._channels.items():
            entry: dict[str, Any] = {"touched": record.touched, "sent": list(record.sent)}
            if record.shared is not None:
                entry["shared"] = record.shared
            if record.overflow and record.overflow_since is not None:
                entry["overflow"] = {"count": record.overflow, "since": record.overflow_since}
            entry["episodes"] = {
                name: {
                    k: v
                    for k, v in (("firing", ep.firing), ("resolved", ep.resolved))
                    if v is not None
                }
                for name, ep in record.episodes.items()
            }
            channels[key] = entry
        return {"version": STATE_VERSION, "channels": channels}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], **bounds: Any) -> DeliveryLedger:
        """Rebuild a ledger from :meth:`to_json`'s output.

        Raises ``ValueError`` when ``data`` is not that form or of another version;
        skips individual malformed entries. ``bounds`` are the constructor's arguments.
        """
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} notification ledger")
        channels = data.get("channels")
        if not isinstance(channels, Mapping):
            raise ValueError("notification ledger without a channels mapping")
        ledger = cls(**bounds)
        ordered = sorted(
            ((k, v) for k, v in channels.items() if isinstance(k, str) and isinstance(v, Mapping)),
            key=lambda kv: _number(kv[1].get("touched")) or 0.0,
        )
        for key, entry in ordered:
            shared = entry.get("shared")
            record = _Channel(
                touched=_number(entry.get("touched")) or 0.0,
                shared=shared if isinstance(shared, str) else None,
            )
            sent = entry.get("sent")
            if isinstance(sent, list):
                record.sent.extend(sorted(t for t in map(_number, sent) if t is not None))
            overflow = entry.get("overflow")
            if isinstance(overflow, Mapping):
                count, since = _number(overflow.get("count")), _number(overflow.get("since"))
                if count is not None and count >= 1 and since is not None:
                    record.overflow, record.overflow_since = int(count), since
            episodes = entry.get("episodes")
            if isinstance(episodes, Mapping):
                parsed = [
                    (name, _Episode(_number(ep.get("firing")), _number(ep.get("resolved"))))
                    for name, ep in episodes.items()
                    if isinstance(name, str) and isinstance(ep, Mapping)
                ]
                parsed.sort(key=lambda item: item[1].touched)
                for name, ep in parsed[-ledger._max_episodes :]:
                    if ep.firing is not None or ep.resolved is not None:
                        record.episodes[name] = ep
            if not record.empty():
                ledger._channels[key] = record
                if record.shared is not None:
                    ledger._groups.setdefault(record.shared, set()).add(key)
        while len(ledger._channels) > ledger._max_channels:
            ledger._channels.popitem(last=False)
        return ledger


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _unresolvable(episode: _Episode | None) -> Suppression | None:
    """Why a resolve of ``episode`` is not sent: never sent as firing, or resolved already."""
    if episode is None or episode.firing is None:
        return Suppression(
            Reason.NOT_SENT_AS_FIRING,
            "this channel was not sent the episode as firing, so there is nothing to resolve",
        )
    if episode.resolved is not None:
        sent = format_time(_dt(episode.resolved))
        return Suppression(Reason.DUPLICATE, f"resolve already sent at {sent}")
    return None
