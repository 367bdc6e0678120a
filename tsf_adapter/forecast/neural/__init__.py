"""Neural forecasters (LSTM, GRU, Transformer): features, networks, training, calibration, checkpoints.

The only part of the package that imports torch, so the rest stays light to import.
"""
