"""The world agentmedic's demo and tests run in, kept out of the operator's package.

- :mod:`agentmedic_sandbox.emulator`: an in-process Kubernetes API server (``ApiEmulator``);
- :mod:`agentmedic_sandbox.cluster`: a real control plane on loopback (``LocalCluster``:
  etcd, kube-apiserver, the controllers and kwok);
- :mod:`agentmedic_sandbox.prometheus`: a real Prometheus, backfilled or scraping;
- :mod:`agentmedic_sandbox.fleet_sim`: simulated agents instrumented with the SDK;
- :mod:`agentmedic_sandbox.receivers`: loopback Slack, PagerDuty and webhook receivers;
- :mod:`agentmedic_sandbox.world`: all of them with the real operator, for ``agentmedic demo``.

This package may import ``agentmedic``; ``agentmedic`` imports it only in
``agentmedic.cli.demo`` (an import-linter contract). A source checkout installs it with
``pip install -e '.[sandbox]'`` (or ``'.[test]'``); the operator's image leaves it out.
"""
