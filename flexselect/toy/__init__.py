"""A toy Qwen2.5-VL trained from scratch on a closed vocabulary: tokenizer, model, batches and training loop.

Model-side only (torch, transformers, tokenizers, numpy); the data that feeds it comes from the caller.
"""
