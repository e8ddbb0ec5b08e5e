"""agentmedic.operator."""
