"""The offline lab: training recipes, the needle benchmark, layer calibration and benchmark evaluation.

It builds on the service (`agent`), `flexselect` and `streams`; the service never imports it.
"""
