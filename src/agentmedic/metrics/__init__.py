"""agentmedic.metrics."""
