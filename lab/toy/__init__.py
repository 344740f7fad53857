"""The toy video LLM's training data, recipe and driver, held-out evaluation and model card."""
