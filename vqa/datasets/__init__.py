"""Dataset readers (CLEVR, GQA) and the synthetic CLEVR-like world."""
