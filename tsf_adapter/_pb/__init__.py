"""Generated protobuf modules; never edit by hand. Regenerate with ``python proto/generate.py``."""
