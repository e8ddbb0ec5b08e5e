"""The Kubernetes client layer without a server: errors, retries, preconditions, paths,
the custom-object patcher and the async (httpx) client on ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
import urllib3
from kubernetes import client as k8s

import agentmedic.kube as kube_pkg
from agentmedic.kube import (
    JSON_PATCH,
    MERGE_PATCH,
    NO_RETRY,
    AsyncKube,
    Conflict,
    CustomObjects,
    Forbidden,
    Gone,
    Invalid,
    Kube,
    KubeError,
    KubeReason,
    Leases,
    NotFound,
    PatchType,
    RetryPolicy,
    Unavailable,
    with_resource_version,
)
from agentmedic.kube.errors import error_for_status
from agentmedic.kube.paths import custom_api, resource_path, workload_path

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlc2lnbmF0dXJl"


def test_the_public_names_are_exported() -> None:
    assert sorted(kube_pkg.__all__) == sorted(set(kube_pkg.__all__))
    for name in kube_pkg.__all__:
        assert getattr(kube_pkg, name) is not None


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "api_reason", "error", "reason"),
    [
        (404, "NotFound", NotFound, KubeReason.NOT_FOUND),
        (409, "Conflict", Conflict, KubeReason.CONFLICT),
        (409, "AlreadyExists", Conflict, KubeReason.ALREADY_EXISTS),
        (410, "Expired", Gone, KubeReason.GONE),
        (400, "BadRequest", Invalid, KubeReason.INVALID),
        (422, "Invalid", Invalid, KubeReason.INVALID),
        (401, "Unauthorized", Forbidden, KubeReason.UNAUTHORIZED),
        (403, "Forbidden", Forbidden, KubeReason.FORBIDDEN),
        (429, "TooManyRequests", Unavailable, KubeReason.UNAVAILABLE),
        (503, "ServiceUnavailable", Unavailable, KubeReason.UNAVAILABLE),
        (415, "UnsupportedMediaType", KubeError, KubeReason.UNKNOWN),
    ],
)
def test_each_status_becomes_one_error_with_its_reason(
    status: int, api_reason: str, error: type[KubeError], reason: KubeReason
) -> None:
    body = json.dumps({"kind": "Status", "message": "said the server", "reason": api_reason})
    exc = error_for_status("patch Deployment agents/bot", status, body)
    assert type(exc) is error
    assert exc.reason is reason
    assert exc.status == status
    assert exc.message.startswith("patch Deployment agents/bot: said the server")


def test_an_answer_that_is_not_a_status_object_keeps_its_start_or_the_http_reason() -> None:
    assert error_for_status("get x", 502, b"<html>bad gateway</html>").message == (
        "get x: <html>bad gateway</html>"
    )
    assert error_for_status("get x", 502, None, http_reason="Bad Gateway").message == (
        "get x: Bad Gateway"
    )


@pytest.mark.parametrize(
    "echoed",
    [
        f"Authorization: Bearer {TOKEN}",
        f'{{"authorization": "{TOKEN}"}}',
        f"token={TOKEN}",
        f"the token {TOKEN} is not valid",
    ],
)
def test_error_text_never_carries_a_token_the_server_echoed(echoed: str) -> None:
    body = json.dumps({"kind": "Status", "message": f"refused: {echoed}"})
    exc = error_for_status("get Secret agents/s", 401, body)
    assert TOKEN not in str(exc)
    assert TOKEN not in exc.message
    assert "refused" in exc.message


def test_a_retry_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        RetryPolicy(attempts=0)
    assert NO_RETRY.gives_up_after(0)
    assert not RetryPolicy(attempts=2).gives_up_after(0)


# --------------------------------------------------------------------------- preconditions, paths


def test_a_merge_patch_precondition_is_the_resource_version_in_a_copy() -> None:
    body = {"metadata": {"annotations": {"a": "1"}}, "spec": {"replicas": 0}}
    out = with_resource_version(body, MERGE_PATCH, "42")
    assert out == {
        "metadata": {"annotations": {"a": "1"}, "resourceVersion": "42"},
        "spec": {"replicas": 0},
    }
    assert "resourceVersion" not in body["metadata"]
    assert with_resource_version(body, MERGE_PATCH, None) is body


def test_a_json_patch_precondition_is_a_leading_test_operation() -> None:
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 0}]
    out = with_resource_version(ops, JSON_PATCH, "7")
    assert out[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert out[1:] == ops
    with pytest.raises(TypeError, match="list of operations"):
        with_resource_version({"spec": {}}, JSON_PATCH, "7")
    with pytest.raises(TypeError, match="is an object"):
        with_resource_version(ops, MERGE_PATCH, "7")


def test_paths_quote_every_segment_and_name_collections_across_namespaces() -> None:
    assert (
        workload_path("Deployment", "agents", "bot")
        == "/apis/apps/v1/namespaces/agents/deployments/bot"
    )
    assert workload_path("StatefulSet", None) == "/apis/apps/v1/statefulsets"
    assert resource_path("api/v1", "a/b", "configmaps", "x y") == (
        "/api/v1/namespaces/a%2Fb/configmaps/x%20y"
    )
    api = custom_api("agentmedic.io", "v1alpha1")
    assert resource_path(api, "agents", "agentpolicies", "p", "status") == (
        "/apis/agentmedic.io/v1alpha1/namespaces/agents/agentpolicies/p/status"
    )
    with pytest.raises(ValueError, match="Deployment or StatefulSet"):
        workload_path("Pod", "agents")
    with pytest.raises(ValueError, match="needs an object name"):
        resource_path(api, "agents", "agentpolicies", None, "status")


# --------------------------------------------------------------------------- the sync client

Answer = bytes | Exception


class ScriptedKube(Kube):
    """A :class:`Kube` whose transport answers from a script and records every request."""

    def __init__(self, answers: list[Answer], **kwargs: Any) -> None:
        self.sleeps: list[float] = []
        super().__init__(
            k8s.ApiClient(k8s.Configuration()),
            sleep=self.sleeps.append,
            rng=random.Random(1),
            **kwargs,
        )
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: dict[str, str],
        body: Any,
        timeout: float | tuple[float, float] | None,
    ) -> bytes:
        self.sent.append(
            {"method": method, "path": path, "query": query, "headers": headers, "body": body}
        )
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _api_error(status: int, message: str = "no", reason: str = "") -> k8s.ApiException:
    exc = k8s.ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message, "reason": reason})
    exc.headers = {}
    return exc


def test_transient_failures_are_retried_with_backoff_then_answered() -> None:
    kube = ScriptedKube([_api_error(503), urllib3.exceptions.ProtocolError("reset"), b'{"a": 1}'])
    assert kube.request("get x", "GET", "/api/v1/x") == {"a": 1}
    assert len(kube.sent) == 3
    assert len(kube.sleeps) == 2
    assert all(0 <= s <= 5.0 for s in kube.sleeps)


def test_retries_end_after_the_policy_s_attempts_with_unavailable() -> None:
    kube = ScriptedKube([_api_error(500)] * 3, retry=RetryPolicy(attempts=3))
    with pytest.raises(Unavailable) as info:
        kube.request("get x", "GET", "/api/v1/x")
    assert info.value.status == 500
    assert len(kube.sent) == 3


def test_a_refusal_is_not_retried() -> None:
    kube = ScriptedKube([_api_error(404, 'deployments.apps "bot" not found')])
    with pytest.raises(NotFound, match=r'get Deployment agents/bot: deployments\.apps "bot"'):
        kube.get_workload("Deployment", "agents", "bot")
    assert len(kube.sent) == 1
    assert kube.sleeps == []


def test_the_guard_is_asked_before_every_attempt_and_can_stop_a_retry() -> None:
    kube = ScriptedKube([_api_error(503), _api_error(503), b"{}"])
    calls: list[int] = []

    def guard() -> None:
        calls.append(len(kube.sent))
        if len(calls) == 2:
            raise RuntimeError("fenced")

    with pytest.raises(RuntimeError, match="fenced"):
        kube.request("patch x", "PATCH", "/x", body={}, content_type=MERGE_PATCH, guard=guard)
    assert calls == [0, 1]
    assert len(kube.sent) == 1


def test_every_patch_names_its_content_type() -> None:
    kube = ScriptedKube([b"{}"])
    kube.patch_workload("Deployment", "agents", "bot", [], JSON_PATCH)
    assert kube.sent[0]["headers"]["Content-Type"] == "application/json-patch+json"
    kube.answers.append(b"{}")
    kube.patch_scaled_object("agents", "so", {"metadata": {}})
    assert kube.sent[1]["headers"]["Content-Type"] == "application/merge-patch+json"
    assert kube.sent[1]["path"] == "/apis/keda.sh/v1alpha1/namespaces/agents/scaledobjects/so"


def test_arequest_sleeps_on_the_event_loop_between_attempts() -> None:
    kube = ScriptedKube([_api_error(429), b'{"ok": true}'])
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    result = asyncio.run(kube.arequest("get x", "GET", "/x", sleep=sleep))
    assert result == {"ok": True}
    assert len(waited) == 1
    assert kube.sleeps == []


def test_of_wraps_a_generated_api_object_and_keeps_a_kube() -> None:
    api_client = k8s.ApiClient(k8s.Configuration())
    wrapped = Kube.of(k8s.CustomObjectsApi(api_client))
    assert wrapped.api_client is api_client
    assert Kube.of(wrapped) is wrapped
    with pytest.raises(TypeError, match="not a Kubernetes client"):
        Kube.of(object())


# --------------------------------------------------------------------------- custom objects, leases


def test_patch_status_sends_a_merge_patch_of_the_status_with_a_precondition() -> None:
    kube = ScriptedKube([b'{"status": {"observedGeneration": 3}}'])
    objects = CustomObjects(kube)
    after = asyncio.run(
        objects.patch_status(
            "agentmedic.io",
            "v1alpha1",
            "agentpolicies",
            "agents",
            "p",
            {"observedGeneration": 3},
            resource_version="11",
        )
    )
    assert after == {"status": {"observedGeneration": 3}}
    (sent,) = kube.sent
    assert sent["method"] == "PATCH"
    assert sent["path"] == "/apis/agentmedic.io/v1alpha1/namespaces/agents/agentpolicies/p/status"
    assert sent["headers"]["Content-Type"] == PatchType.MERGE.value
    assert sent["body"] == {
        "status": {"observedGeneration": 3},
        "metadata": {"resourceVersion": "11"},
    }


def test_patch_annotations_removes_with_none_and_reports_a_stale_version_as_conflict() -> None:
    kube = ScriptedKube([_api_error(409, "the object has been modified", "Conflict")])
    objects = CustomObjects(kube)
    with pytest.raises(Conflict) as info:
        asyncio.run(
            objects.patch_annotations(
                "agentmedic.io",
                "v1alpha1",
                "agentpolicies",
                "agents",
                "p",
                {"agentmedic.io/state": "{}", "old": None},
                resource_version="5",
            )
        )
    assert info.value.reason is KubeReason.CONFLICT
    assert kube.sent[0]["body"] == {
        "metadata": {
            "annotations": {"agentmedic.io/state": "{}", "old": None},
            "resourceVersion": "5",
        }
    }


def test_get_of_a_missing_object_is_none_and_other_faults_raise() -> None:
    kube = ScriptedKube([_api_error(404), _api_error(403)])
    objects = CustomObjects(kube)
    assert asyncio.run(objects.get("g", "v1", "things", "ns", "x")) is None
    with pytest.raises(Forbidden, match="check the RBAC"):
        asyncio.run(objects.get("g", "v1", "things", "ns", "x"))


def test_leases_are_tried_once_per_call() -> None:
    kube = ScriptedKube([_api_error(503)])
    with pytest.raises(Unavailable):
        asyncio.run(Leases(kube).get("ns", "peering"))
    assert len(kube.sent) == 1
    assert kube.sent[0]["path"] == "/apis/coordination.k8s.io/v1/namespaces/ns/leases/peering"


# --------------------------------------------------------------------------- the async client


def _configuration(token: str | None = TOKEN) -> k8s.Configuration:
    conf = k8s.Configuration(host="http://127.0.0.1:1")
    if token:
        conf.api_key = {"authorization": token}
        conf.api_key_prefix = {"authorization": "Bearer"}
    return conf


def _async_kube(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[AsyncKube, list[float]]:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    kube = AsyncKube(
        _configuration(), transport=httpx.MockTransport(handler), sleep=sleep, **kwargs
    )
    return kube, waited


def test_the_async_client_sends_the_token_and_retries_a_transient_list() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503, json={"kind": "Status", "message": "busy"})
        return httpx.Response(200, json={"items": [], "metadata": {"resourceVersion": "9"}})

    async def run() -> dict[str, Any]:
        kube, waited = _async_kube(handler)
        try:
            data = await kube.get_json(
                "/apis/apps/v1/namespaces/a/deployments", {"labelSelector": "x=y"}
            )
        finally:
            await kube.aclose()
        assert len(waited) == 1
        return data

    assert asyncio.run(run())["metadata"]["resourceVersion"] == "9"
    assert seen[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen[-1].url.params["labelSelector"] == "x=y"


def test_the_async_client_translates_a_refusal_without_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echo = request.headers["Authorization"]
        return httpx.Response(403, json={"kind": "Status", "message": f"denied for {echo}"})

    async def run() -> None:
        kube, waited = _async_kube(handler)
        try:
            with pytest.raises(Forbidden) as info:
                await kube.get_json("/api/v1/namespaces/a/configmaps/c", {})
        finally:
            await kube.aclose()
        assert TOKEN not in str(info.value)
        assert waited == []

    asyncio.run(run())


def test_a_connection_failure_is_unavailable_after_the_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def run() -> None:
        kube, waited = _async_kube(handler, retry=RetryPolicy(attempts=2))
        try:
            with pytest.raises(Unavailable, match="cannot reach the API server"):
                await kube.get_json("/api/v1/x", {})
        finally:
            await kube.aclose()
        assert len(waited) == 1

    asyncio.run(run())


def test_watch_yields_events_and_an_expired_version_raises_gone() -> None:
    lines = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "2"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "3"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["watch"] == "true"
        return httpx.Response(200, content="\n".join(json.dumps(x) for x in lines).encode())

    async def run() -> list[str]:
        kube, _ = _async_kube(handler)
        seen: list[str] = []

        async def consume() -> None:
            async for event in kube.watch("/apis/apps/v1/deployments", {"watch": "true"}):
                seen.append(event["type"])

        try:
            with pytest.raises(Gone, match="too old"):
                await consume()
        finally:
            await kube.aclose()
        return seen

    assert asyncio.run(run()) == ["ADDED", "BOOKMARK"]


def test_each_watch_has_a_connection_of_its_own_closed_with_its_stream() -> None:
    """Hundreds of watches in one httpx pool cost a scan of the pool per request sent or
    response closed: each stream gets a client of its own, gone when the stream ends."""
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch") == "true":
            await release.wait()
            return httpx.Response(200, content=b"")
        return httpx.Response(200, json={"items": []})

    async def run() -> list[int]:
        kube = AsyncKube(_configuration(), transport=httpx.MockTransport(handler))
        seen: list[int] = []
        streams: list[contextlib.AbstractAsyncContextManager[httpx.Response]] = []
        try:
            for i in range(3):
                stream = kube.stream(f"/apis/apps/v1/namespaces/n{i}/deployments", {})
                streams.append(stream)
            entered = [asyncio.create_task(s.__aenter__()) for s in streams]
            await asyncio.sleep(0)
            seen.append(kube.open_watches)
            await kube.get_json("/apis/apps/v1/deployments", {"labelSelector": "a=b"})
            seen.append(kube.open_watches)  # a request goes through the requests' pool
            release.set()
            await asyncio.gather(*entered)
            for s in streams:
                await s.__aexit__(None, None, None)
            seen.append(kube.open_watches)
        finally:
            await kube.aclose()
        return seen

    assert asyncio.run(run()) == [3, 3, 0]
