"""Prometheus wire protocols: codecs (pure) and the HTTP pieces built on them."""
