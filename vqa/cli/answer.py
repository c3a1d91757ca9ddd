"""`vqa answer`: answer a question about a scene."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("answer", help="answer a question about a scene")
    p.add_argument("--scene", required=True,
                   help="a SceneGraph JSON file, or a CLEVR scenes file (first scene, or --image-id)")
    p.add_argument("--image-id", help="which scene of a CLEVR scenes file")
    p.add_argument("--program", required=True,
                   help='the question as a CLEVR program, e.g. "count(filter_color[red](scene))"')
    p.add_argument("--question", help="the question's text (shown with the answer)")
    p.add_argument("--json", action="store_true", help="print answer, program and trace as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..executor import execute
    from ..pipeline import load_scene
    from ..program import Program

    scene = load_scene(args.scene, args.image_id)
    program = Program.parse(args.program).validate()
    result = execute(program, scene)
    if args.json:
        print(json.dumps({"question": args.question, "answer": result.answer, "error": result.error,
                          "program": program.to_clevr(), "trace": [t.to_dict() for t in result.trace]}, indent=1))
    else:
        if args.question:
            print(f"question: {args.question}")
        print("program:")
        for line in str(program).splitlines():
            print(f"  {line}")
        print("trace:")
        for t in result.trace:
            val = t.error if t.error else (list(t.value) if isinstance(t.value, tuple) else t.value)
            print(f"  {t.index}  {t.token:<22} -> {val}")
        print(f"answer: {result.answer if result.ok else 'none (' + result.error + ')'}")
    return 0 if result.ok else 1
