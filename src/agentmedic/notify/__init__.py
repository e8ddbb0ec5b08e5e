"""agentmedic.notify."""
