"""The synthetic CLEVR-like world: scenes, renderer, questions."""
