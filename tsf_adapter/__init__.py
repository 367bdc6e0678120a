"""tsf-adapter: forecasting daemon for Prometheus.

Data flows ingest → store → train → forecast → write:
``remote`` speaks Prometheus's wire protocols, ``store`` keeps history,
``forecast`` trains and predicts, and the scheduler writes results back.
"""

from __future__ import annotations

__version__ = "0.1.0"
