"""agentmedic.cli."""
