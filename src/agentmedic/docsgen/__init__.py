"""Generators of the documentation pages, above the layers they describe.

:mod:`agentmedic.docsgen.reference` renders ``docs/policy-reference.md`` from the API
models and the CRD, :mod:`agentmedic.docsgen.budget_reference` ``docs/budget-reference.md``
from finance's; :mod:`agentmedic.docsgen.configuration` renders
``docs/configuration.md`` from the operator's settings. ``agentmedic docs`` prints them
(``make docs`` writes them) and tests in ``tests/docs`` fail when a committed page
differs. The CRD itself is rendered in :mod:`agentmedic.api.crd`, beside the models.
"""
