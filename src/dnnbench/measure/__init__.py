"""Measurements, one module per figure. Nothing here prints, parses arguments or draws."""
