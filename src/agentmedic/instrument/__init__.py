"""agentmedic.instrument."""
