"""agentmedic.engine."""
