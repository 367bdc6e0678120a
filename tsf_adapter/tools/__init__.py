"""Commands beside the daemon: backtest, CSV input, the quota simulator and the demo.

They may import any layer but ``cli``; nothing of the daemon imports them.
"""
