"""agentmedic.sandbox."""
