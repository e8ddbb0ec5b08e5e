"""The sandbox's prompt-optimization Jobs: the real ``agentmedic optimize-prompt`` against a
loopback model, with the sandbox playing the Job's container.

Neither API server of the sandbox runs containers (the emulator has no kubelet; kwok's fake
nodes only move pods through their phases), so the sandbox's CronJob template creates its
Jobs suspended, and :class:`PromptJobRunner` does what the container would: for each new
Job it runs ``agentmedic optimize-prompt`` as a subprocess with the environment the Job
carries (agentmedic's ``AGENTMEDIC_*`` variables, the model server's URL, the API key from
the sandbox's Secret), then lets the Job finish: on the emulator by setting the condition the
Job controller would, on the real control plane by unsuspending it so that the controller
and kwok run its pod to completion. The result reaches the operator through the documented
contract (the ConfigMap's annotation), exactly as from a real Job.

The simulated agents read their prompt's length: an agent whose live prompt agentmedic
replaced by a shorter one answers faster in proportion (:func:`latency_factor`), which is
what the demo's slow agent shows.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentmedic.actions.prompt_record import PROMPT_TEMPLATE_ANNOTATION
from agentmedic_sandbox.model_server import ModelServer

__all__ = [
    "API_KEY_SECRET",
    "DEMO_PROMPT",
    "PROMPT_KEY",
    "PromptJobRunner",
    "cron_job",
    "latency_factor",
    "prompt_config_map",
]

_log = logging.getLogger(__name__)

PROMPT_KEY = "system-prompt"
"""The key of each agent's ConfigMap ``<agent>-prompt`` (the example policy's spec.prompt)."""
API_KEY_SECRET = "openai"
MIN_FACTOR = 0.25
"""The fastest a shorter prompt makes an agent: the model's own time stays."""

DEMO_PROMPT = "\n".join(
    [
        "You are {agent_name}, the support assistant of ACME. Answer {{customer_name}} about "
        "order ${order_id} in the customer's language.",
        "Never promise a delivery date. [required]",
        "Escalate refunds above 500 EUR to a person. [required]",
        *(
            f"Example {i}: a customer asks about {topic}; look the order up with the "
            "search_knowledge_base tool, answer in two sentences and offer further help."
            for i, topic in enumerate(
                (
                    "a late parcel",
                    "a damaged item",
                    "a refund",
                    "an invoice address",
                    "a missing item",
                    "a cancelled order",
                ),
                start=1,
            )
        ),
        "Be polite and brief.",
        "Be polite and brief.",
        "Sign as $agent_name.",
    ]
)


def prompt_config_map(namespace: str, agent: str) -> dict[str, Any]:
    """The ConfigMap holding an agent's live prompt."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{agent}-prompt", "namespace": namespace},
        "data": {PROMPT_KEY: DEMO_PROMPT},
    }


def cron_job(namespace: str, base_url: str) -> dict[str, Any]:
    """The chart's ``prompt-optimizer`` CronJob, with its Jobs created suspended (see the
    module's docstring) and the model server on loopback."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "prompt-optimizer", "namespace": namespace},
        "spec": {
            "suspend": True,
            "schedule": "0 0 1 1 *",
            "jobTemplate": {
                "spec": {
                    "suspend": True,
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "optimizer",
                                    "image": "ghcr.io/agentmedic/agentmedic:0.1.0",
                                    "command": ["agentmedic", "optimize-prompt"],
                                    "env": [
                                        {"name": "OPENAI_BASE_URL", "value": base_url},
                                        {"name": "OPENAI_MODEL", "value": "gpt-4o-mini"},
                                        {
                                            "name": "OPENAI_API_KEY",
                                            "valueFrom": {
                                                "secretKeyRef": {
                                                    "name": API_KEY_SECRET,
                                                    "key": "api-key",
                                                }
                                            },
                                        },
                                    ],
                                }
                            ],
                        }
                    },
                }
            },
        },
    }


def latency_factor(deployment: dict[str, Any], prompt: str | None) -> float:
    """How much faster an agent is with its live prompt than with the demo's: the share of
    the length left (at least :data:`MIN_FACTOR`); 1 when agentmedic has not rolled a
    prompt out (the pod template names no version) or the prompt is unknown."""
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(PROMPT_TEMPLATE_ANNOTATION) or not prompt:
        return 1.0
    return max(MIN_FACTOR, min(1.0, len(prompt) / len(DEMO_PROMPT)))


class PromptJobRunner:
    """Plays the container of every prompt-optimization Job of ``namespaces`` (a thread)."""

    def __init__(
        self,
        api: Any,
        namespaces: list[str],
        kubeconfig: Callable[[], Path],
        api_key: str,
        *,
        real: bool,
        log: Callable[[str], None] = lambda _m: None,
        poll: float = 0.5,
    ) -> None:
        self.api = api
        self.real = real
        """A real control plane (its Job controller finishes the Job) or the emulator."""
        self.namespaces = namespaces
        self.kubeconfig = kubeconfig
        self.api_key = api_key
        self.log = log
        self.poll = poll
        self.model = ModelServer()
        self.results: dict[str, int] = {}
        """Job name → the exit code of optimize-prompt."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prompt-jobs", daemon=True)

    @property
    def base_url(self) -> str:
        return self.model.base_url

    def start(self) -> PromptJobRunner:
        self.model.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.model.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.run_pending()
            except Exception:
                _log.exception("running the sandbox's prompt-optimization Jobs failed")

    def run_pending(self) -> None:
        """Run every Job not run yet, once."""
        for namespace in self.namespaces:
            for job in self._jobs(namespace):
                name = job["metadata"]["name"]
                if name in self.results or not (job.get("spec") or {}).get("suspend"):
                    continue
                self.results[name] = self._run(namespace, job)
                self._finish(namespace, name)

    def _jobs(self, namespace: str) -> list[dict[str, Any]]:
        """agentmedic's Jobs in ``namespace``, as JSON."""
        if not self.real:  # the emulator's own door: not an API request of anyone
            found: list[dict[str, Any]] = self.api.list("batch/v1", "Job", namespace)
            return [j for j in found if "agentmedic.io/agent" in j["metadata"].get("labels", {})]
        import kubernetes

        client = kubernetes.client.ApiClient(self._admin())
        try:
            batch = kubernetes.client.BatchV1Api(client)
            listed = batch.list_namespaced_job(namespace, label_selector="agentmedic.io/agent")
            plain = client.sanitize_for_serialization(listed)  # type: ignore[no-untyped-call]
            jobs: list[dict[str, Any]] = plain["items"]
            return jobs
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def _admin(self) -> Any:
        """The cluster administrator's connection (the Job controller's part is no one's
        the operator plays): ``admin_configuration()`` where the server offers one."""
        return getattr(self.api, "admin_configuration", self.api.client_configuration)()

    def _run(self, namespace: str, job: dict[str, Any]) -> int:
        """``agentmedic optimize-prompt`` with the Job's environment; its exit code."""
        [container] = job["spec"]["template"]["spec"]["containers"][:1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMEDIC_")}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
        env["OPENAI_API_KEY"] = self.api_key  # the secretKeyRef, as the kubelet resolves it
        env["AGENTMEDIC_TERMINATION_LOG"] = ""
        args = [sys.executable, "-m", "agentmedic.cli", *container["command"][1:]]
        args += ["--kubeconfig", str(self.kubeconfig())]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
        said = lines[-1] if lines else f"exit {done.returncode}"
        self.log(f"Job {job['metadata']['name']}: agentmedic optimize-prompt: {said}")
        return done.returncode

    def _finish(self, namespace: str, name: str) -> None:
        """What happens when the container exits: the Job completes."""
        if not self.real:  # the emulator has no Job controller: set what it would
            status = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
            self.api.patch("batch/v1", "Job", namespace, name, {"status": status},
                           subresource="status")  # fmt: skip
            return
        import kubernetes

        client = kubernetes.client.ApiClient(self._admin())
        try:  # the Job controller and kwok run its pod to completion
            batch = kubernetes.client.BatchV1Api(client)
            batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": False}})
        finally:
            client.close()  # type: ignore[no-untyped-call]
