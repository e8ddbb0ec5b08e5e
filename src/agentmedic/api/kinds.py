"""Every kind beyond AgentPolicy registers its CRD (:func:`agentmedic.api.crd.register`) when
its module is imported; importing this module imports them all."""
