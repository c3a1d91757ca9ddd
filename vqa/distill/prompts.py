"""Prompts of the distillation loop (after Eiter, Hadl, Higuera & Oetsch, KR 2024).

The preprompt states the task, the ASP pitfalls, the encodings with an example, the
answer format and the current theory, and asks for new rules only. Mend prompts carry
the solver's own words back: the syntax or safety message, the forbidden construct,
or expected vs derived answers with the first program step whose objects or values
differ (step-level diagnosis, beyond the paper).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

PITFALLS = """\
ASP (clingo) rules you write must follow these rules:
- Separate body literals with commas ",", never semicolons ";"; end every rule with a period.
- Variables start with an upper-case letter, constants with a lower-case letter or are numbers.
- Every variable of a rule must occur in a positive body literal (safety): a variable that only
  occurs in the head, in a negated literal ("not p(X)") or in a comparison is unsafe.
- Write general rules: few constants, many variables. No facts about particular scenes or
  questions, no #directives (#script, #include, #external, #const, #show, ...), no @-functions.
- Derive failures as atoms; never add constraints that make the whole program unsatisfiable.
"""


@dataclass
class Example:
    """One training example: a question's program on a scene, with the expected answer."""

    qid: str
    question: str
    program_text: str  # one step per line
    facts: str  # the scene and question facts, as the encoder writes them
    expected: str
    meta: dict = field(default_factory=dict)


def preprompt(theory: str, encoding_doc: str, example_facts: str) -> str:
    return f"""You extend an Answer Set Programming theory, run with clingo, that answers visual questions.
A scene (objects, attributes, relations) and each question's program (a sequence of steps) are
given as facts; the theory executes the program step by step and derives the answer as
ans(Q, V) for question Q. Some rules are missing, so some questions get no answer or a wrong one.
Your job: write the missing rules so that the questions below are answered correctly.

{PITFALLS}
How scenes and questions are encoded:
{encoding_doc.strip()}

Example facts:
```
{example_facts.strip()}
```

The current theory:
```
{theory.strip()}
```

Reply with the NEW rules only, inside one ```asp code block, and nothing else: no prose, no
facts, no rules already in the theory."""


def task_prompt(examples: list[Example], facts: str, derived: list[list[str]]) -> str:
    """The examples of one batch: example k is question k of the facts."""
    parts = ["Extend the theory so that it answers these questions correctly.\n\nFacts of the scenes and questions:",
             f"```\n{facts.strip()}\n```"]
    for k, ex in enumerate(examples):
        got = derived[k] if k < len(derived) else []
        parts.append(f"""Question {k}: {ex.question}
Program (step: function[value] <- input steps):
{ex.program_text}
Expected answer: ans({k}, {ex.expected})
The current theory derives: {', '.join(f'ans({k}, {g})' for g in got) if got else 'no answer'}""")
    return "\n\n".join(parts)


def mend_syntax(message: str) -> str:
    return f"""clingo could not parse your rules:
{message.strip()}
Fix the rules. Reply with the corrected new rules only, in one ```asp code block."""


def mend_unsafe(message: str) -> str:
    return f"""clingo rejected your rules because of unsafe variables:
{message.strip()}
Every variable must occur in a positive body literal. Reply with the corrected new rules only, in one ```asp code block."""


def mend_forbidden(message: str) -> str:
    return f"""Your reply was rejected: {message.strip()}
Only plain rules are allowed (no #directives, no @-functions, no scripts). Reply with the new rules only, in one ```asp code block."""


def mend_limit(message: str) -> str:
    return f"""Grounding or solving your rules did not finish: {message.strip()}
Your rules probably generate unbounded terms (e.g. X+1 in a recursive rule). Reply with corrected new rules only, in one ```asp code block."""


def mend_refused(message: str) -> str:
    return f"""Your reply was refused: {message.strip()}
Reply with a few general rules only (variables, no facts about particular scenes or questions), in one ```asp code block."""


def mend_wrong(failures: list[dict]) -> str:
    """`failures`: dicts with `name` (how to refer to the question), expected, got, and an
    optional diagnosis (step, op, expected, derived)."""
    lines = ["With your rules the solver derives wrong answers:"]
    for f in failures:
        got = ", ".join(f["got"]) if f.get("got") else "no answer"
        lines.append(f"- {f['name']}: expected {f['expected']}, derived {got}")
        d = f.get("diagnosis")
        if d:
            lines.append(f"  first wrong step {d['step']} ({d['op']}): expected {d['expected']}, derived {d['derived']}")
    lines.append("Fix the rules. Reply with the corrected new rules only, in one ```asp code block.")
    return "\n".join(lines)


def mend_regression(failures: list[dict]) -> str:
    return mend_wrong(failures).replace("derives wrong answers", "breaks questions answered correctly before")


def mend_truncated(max_tokens: int | None) -> str:
    limit = f" of {max_tokens} tokens" if max_tokens else ""
    return f"""Your reply was cut off at the length limit{limit} before any complete rule.
Reply with a few short general rules only, no explanation, in one ```asp code block."""


def mend_empty(message: str) -> str:
    return f"""Your reply was refused: {message.strip()}
Reply with the missing rules, in one ```asp code block."""


_THINK = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.S | re.I)
_THINK_END = re.compile(r"</(think|thinking|reasoning)>", re.I)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*$", re.M)
_INLINE_FENCE = re.compile(r"(?<=[^\s`])[ \t]*(?=```)")  # a fence after other text on its line
_ASP_LANGS = {"", "asp", "clingo", "gringo", "lp", "prolog", "pl", "datalog", "answer-set", "answerset", "clasp"}
_PROSE = re.compile(r"[A-Za-z']+[,;]? [A-Za-z']+[,;]? [A-Za-z']+")
_ASP_LINE = re.compile(r":-|^\s*[a-z_][A-Za-z0-9_]*(\(.*\))?\s*\.\s*(%.*)?$|^\s*#[a-z]")


def strip_thinking(reply: str) -> str:
    """The reply without reasoning blocks: `<think>...</think>` (also `thinking`,
    `reasoning`; an unclosed one runs to the end), and everything before a lone closing
    tag (templates that open the block in the prompt)."""
    text = _THINK.sub("", reply)
    ends = list(_THINK_END.finditer(text))
    return text[ends[-1].end():] if ends else text


def extract_rules(reply: str, cut: bool = False) -> str:
    """The rules of a reply, as real models write them:

    - reasoning blocks (`<think>...</think>`) are dropped;
    - a fence after other text on its line (`Sure! ```asp`, `a :- b.```) starts a line;
    - with code fences: the blocks labelled as ASP (or unlabelled), all of them, in order
      (a block in another language, e.g. ```python, only when there is nothing else); a
      last block left open (the reply ended inside it) counts as a block;
    - without fences: the whole text, less the lines that are plainly prose (three words
      in a row or a line ending in a colon; no parenthesis) when some other line
      looks like ASP (`:-`, a fact, a directive);
    - `cut` (the reply stopped at the token limit): the unfinished statement at the end is
      dropped, so what is left is whole statements (possibly none).
    """
    text = _INLINE_FENCE.sub("\n", strip_thinking(reply))
    marks = list(_FENCE.finditer(text))
    if marks:
        blocks, other = [], []
        for k in range(0, len(marks), 2):
            lang = marks[k].group(1).lower()
            start = marks[k].end() + 1
            end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
            (blocks if lang in _ASP_LANGS else other).append(text[start:end] if start <= end else "")
        text = "\n".join(blocks or other)
    else:
        lines = text.splitlines()
        asp = [bool(_ASP_LINE.search(ln)) for ln in lines]
        if any(asp):
            text = "\n".join(ln for ln, a in zip(lines, asp)
                             if a or not _prose(ln))
    text = text.strip()
    if cut:
        text = _whole_statements(text)
    return text


def _prose(line: str) -> bool:
    if line.lstrip().startswith(("# ", "##")):  # a markdown heading
        return True
    s = line.strip().strip("*_ ")  # markdown emphasis around a heading
    return ("(" not in s and not s.startswith("%")
            and (bool(_PROSE.search(s)) or (s.endswith(":") and any(c.isalpha() for c in s))))


def _whole_statements(text: str) -> str:
    """`text` up to its last statement end: a period followed by white space or the end,
    outside strings and comments, and not part of `..`."""
    last, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c == "%":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "." and (i + 1 == n or text[i + 1].isspace()) and (i == 0 or text[i - 1] != "."):
            last = i + 1
        i += 1
    return text[:last].strip()
