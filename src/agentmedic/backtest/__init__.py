"""Backtest: a policy tried on history before it is trusted."""
