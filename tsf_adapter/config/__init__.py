"""The configuration: sections as frozen dataclasses and the strict YAML decoder that builds them.

A leaf above ``core``: it imports nothing of the package but ``core``, so every
layer can take a config type without loading the store, the models or the wire.
"""
