"""Evaluation the way the field does it: metrics, BD-rate, reference codecs, results, plots."""
