"""FlexSelect-Lite training: where teacher groups come from, the recipe and driver, the model card."""
