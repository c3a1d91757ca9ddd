"""A torch-free inference runtime for the scene parser and the question parser.

Same outputs as the torch models in eval mode (the tests compare them), from `.npz` exports
of their checkpoints (`vqa export-numpy`), with numpy only: `import torch` alone takes
seconds, which is most of a cold `vqa answer`. Training, CUDA and the NSM stay on torch.

- `ops`: the layers (GELU, LayerNorm, linear, channels-last conv, grouped-query attention,
  bicubic resampling of position embeddings).
- `checkpoints`: export (`.pt` -> `.npz`, needs torch) and loading (numpy only), and the check
  that an export still matches its `.pt` file.
- `scene_parser.NumpySceneParser`: image -> SceneGraph.
- `seq2seq.NumpySeq2Seq`: the question parser's model, with a K/V cache for decoding; used
  through `vqa.language.parser.QuestionParser.from_checkpoint("....npz")`.
"""
