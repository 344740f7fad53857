"""The toy model's data, training driver, evaluation, calibration and needle benchmark (`streams.synth`)."""
