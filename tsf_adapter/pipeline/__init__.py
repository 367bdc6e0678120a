"""Where store, forecast and remote meet: targets, backfill, the schedule, output and forecast error.

Data flows through here in the order of the modules' roles: ``backfill``
(remote-read → store), ``scheduler`` (store → train → forecast), ``output``
(forecast → series to write), ``forecast_error`` (forecasts scored as they mature).
"""
