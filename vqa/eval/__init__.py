"""Evaluation: CLEVR (`clevr`), GQA (`gqa`), scoring and reports (`report`), GQA scale bench (`gqa_scale`)."""
