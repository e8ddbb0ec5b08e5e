"""agentmedic.api."""
