"""Data only: the types and rules every other layer shares; imports nothing else of the package.

``series`` (labels, samples, staleness), ``selector`` (PromQL series selectors),
``units`` (durations and sizes as Prometheus writes them), ``grid`` (the regular
time grid a target lives on), ``windows`` (how much of that grid a training needs),
``clock``, ``address`` (host:port), ``protocol`` (the remote-write message names),
``lifecycle`` (ready/stopping) and ``errors``.
"""
