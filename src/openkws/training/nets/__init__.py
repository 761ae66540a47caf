"""Encoders: streaming ECAPA-TDNN acoustic encoder, bi-LSTM text encoder, phoneme cross-attention."""
