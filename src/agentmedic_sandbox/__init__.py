"""agentmedic_sandbox."""
