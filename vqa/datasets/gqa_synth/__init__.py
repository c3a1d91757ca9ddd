"""A synthetic world in GQA's file formats (scene graphs, balanced questions, images).

`world.py` turns a scene of the CLEVR-like sampler (`vqa.datasets.synth.scenes`) into a
GQA scene graph with GQA names, a name hierarchy, typed multi-valued attributes and GQA
relation names; `questions.py` writes GQA questions (text, `semantic` program, types,
groups, entailment); `generate.py` writes the files (`vqa generate --format gqa`).
"""
