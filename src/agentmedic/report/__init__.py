"""The fleet report: cost, reliability and speed of every agent, side by side."""
