"""Benchmark evaluation: published annotation formats in, per-item JSON lines and accuracy tables out.

One reader per benchmark (VideoMME, MLVU dev, LongVideoBench val, LVBench) turns its release layout into
`EvalItem`s; `runner` answers them over FlexSelect's selection, resuming from `items.jsonl`; `summary`
and `compare` turn result directories into tables. Only `model` and `scorers` load torch and the models.
"""
