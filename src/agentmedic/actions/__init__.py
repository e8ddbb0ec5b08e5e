"""agentmedic.actions."""
