"""Question tokenizer: text -> canonical words -> ids, and the program-token vocabulary.

    tok = QuestionTokenizer.build(["How many red balls are there?", ...])
    tok.words("What's the colour of the BIG ball?")
        # ['what', 'is', 'the', 'color', 'of', 'the', 'large', 'sphere']
    tok.encode("...")  -> [BOS, id, ..., EOS]    unknown words -> UNK, never an error

Normalisation, in order: lower case; apostrophes and contractions ("what's" -> "what is",
"isn't" -> "is not"); every character that is not a letter or digit separates words
(punctuation is dropped); British spellings and CLEVR's synonyms map to one canonical
word (ball/sphere, block/cube, big/large, tiny/small, shiny/metallic/metal, matte/rubber,
thing/object, grey/gray, colour/color), plurals to the canonical plural.

`ProgramVocab` is the decoder's side: every CLEVR prefix token (`filter_color[red]`,
`relate[left]`, `count`, ...) plus PAD/BOS/EOS, in a fixed order derived from
`vqa.ontology`, so that a checkpoint's ids mean the same thing everywhere.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..ontology import CLEVR_ATTRIBUTES, CLEVR_FUNCTIONS, arg_vocabulary

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)

# one word -> canonical word(s); applied after lower-casing and splitting
CANONICAL: dict[str, str] = {
    "ball": "sphere", "balls": "spheres", "block": "cube", "blocks": "cubes",
    "big": "large", "bigger": "larger", "tiny": "small", "shiny": "metal", "metallic": "metal",
    "matte": "rubber", "thing": "object", "things": "objects",
    "grey": "gray", "colour": "color", "colours": "colors", "coloured": "colored",
}
CONTRACTIONS: dict[str, str] = {
    "what's": "what is", "there's": "there is", "it's": "it is", "that's": "that is",
    "isn't": "is not", "aren't": "are not", "doesn't": "does not", "don't": "do not",
    "can't": "can not", "cannot": "can not", "how's": "how is", "where's": "where is",
    "which's": "which is", "object's": "object is", "thing's": "thing is",
}
# words that decide the program: never dropped by the training noise (see train.py)
CONTENT_WORDS: frozenset[str] = frozenset(
    [v for vals in CLEVR_ATTRIBUTES.values() for v in vals]
    + ["spheres", "cubes", "cylinders", "object", "objects", "other", "another", "same", "as",
       "and", "or", "either", "both", "left", "right", "front", "behind", "many", "number", "more",
       "fewer", "less", "greater", "larger", "smaller", "equal", "than", "color", "size", "shape",
       "material", "made", "how", "what", "which", "is", "are", "there", "any", "count", "exist",
       "does", "do", "kind"])

_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> list[str]:
    """Canonical words of `text` (any string; never raises)."""
    text = str(text).lower().replace("\u2019", "'").replace("`", "'")
    for short, long in CONTRACTIONS.items():
        if short in text:
            text = re.sub(rf"\b{re.escape(short)}", long, text)
    text = re.sub(r"'s\b", "", text)  # possessive: "the cube's color" -> "the cube color"
    out: list[str] = []
    for w in _WORD.findall(text):
        out.extend(CANONICAL.get(w, w).split())
    return out


@dataclass
class QuestionTokenizer:
    """Canonical words <-> ids. `words[i]` is the word of id i; ids 0..3 are SPECIALS."""

    words_list: list[str]

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words_list)}
        if tuple(self.words_list[:4]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")

    @classmethod
    def build(cls, texts, min_count: int = 1) -> "QuestionTokenizer":
        """Vocabulary of the words in `texts` seen >= min_count times (other words are UNK:
        a word the model never trained on has no useful embedding)."""
        counts = Counter(w for t in texts for w in normalise(t))
        words = sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIALS)
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.words_list)

    def words(self, text: str) -> list[str]:
        return normalise(text)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """[BOS, word ids..., EOS]; unknown words -> UNK; truncated to max_len (EOS kept)."""
        ids = [self.index.get(w, 1) for w in normalise(text)]
        if max_len is not None:
            ids = ids[:max(0, max_len - 2)]
        return [2] + ids + [3]

    def decode(self, ids) -> list[str]:
        return [self.words_list[i] if 0 <= i < len(self.words_list) else UNK for i in ids]

    @property
    def unk_id(self) -> int:
        return 1


def program_tokens() -> list[str]:
    """Every CLEVR prefix token, in catalogue order: `scene`, `filter_color[gray]`, ..."""
    out = []
    for spec in CLEVR_FUNCTIONS.values():
        if spec.arg:
            out += [f"{spec.name}[{v}]" for v in arg_vocabulary(spec.arg)]
        else:
            out.append(spec.name)
    return out


@dataclass
class ProgramVocab:
    """Decoder vocabulary: PAD, BOS, EOS, then the program tokens."""

    tokens: list[str]

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def clevr(cls) -> "ProgramVocab":
        return cls([PAD, BOS, EOS] + program_tokens())

    pad_id, bos_id, eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, prefix: list[str]) -> list[int]:
        """Prefix tokens -> [BOS, ids..., EOS]; a KeyError names an unknown token."""
        try:
            return [1] + [self.index[t] for t in prefix] + [2]
        except KeyError as e:
            raise KeyError(f"program token {e.args[0]!r} is not in the CLEVR vocabulary") from None
