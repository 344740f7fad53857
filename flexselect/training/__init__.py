"""Training: one toolkit (schedule, optim, checkpoint, loop) and the selector's rank distillation on it.

The toolkit (`schedule`, `optim`, `checkpoint`, `loop`) serves every model trained here: the toy model
(`flexselect.toy.train`) and the FlexSelect-Lite selector (`distill`, with its `data`, `loss` and
`metrics`) each supply only their batches, their loss and their held-out metrics.
"""
