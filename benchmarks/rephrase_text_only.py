"""Offline rephrasing of text-only prompts (no reference images): are all the subjects kept?

Without references there are no Ref tags to split a prompt into subjects, so the rephraser has to find them in the
words ("a red star … and one blue ball …"). Held-out LibraWorld plans are paraphrased as in
``rephrase_accuracy.py`` (different verbs, nouns, word order) and rephrased with no references; measured: the final
prompt names as many subjects as the clip has, and names every subject's colour.

    python benchmarks/rephrase_text_only.py --n 200 --out docs/examples/rephrase
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import provenance
from rephrase_accuracy import paraphrase

from libragen.infer.rephrase import MENTION, OfflineRephraser
from libragen.world.config import WorldConfig
from libragen.world.identity import identity
from libragen.world.plan import plan_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="held-out plans (those with no subject are skipped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    specs = [spec for spec in plan_world(WorldConfig(), args.n, seed=args.seed, split="heldout") if spec.subjects]
    rephraser = OfflineRephraser()
    count_right, colours_named, by_count, examples = 0, 0, {}, []
    for spec in specs:
        prompt = paraphrase(spec, rng)[0]
        final = rephraser(prompt, []).final
        right = len(MENTION.findall(final)) == len(spec.subjects)
        count_right += right
        colours_named += all(identity(s.identity_id).colour in final for s in spec.subjects)
        hits = by_count.setdefault(len(spec.subjects), [0, 0])
        hits[0], hits[1] = hits[0] + right, hits[1] + 1
        if len(examples) < 6 and len(spec.subjects) > 1:
            examples.append({"prompt": prompt, "final": final})
    result = {
        **provenance(),
        "prompts": len(specs),
        "subject_count_right": count_right / len(specs),
        "every_colour_named": colours_named / len(specs),
        "subject_count_right_by_subjects": {k: hits / total for k, (hits, total) in sorted(by_count.items())},
        "examples": examples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rephrase_text_only.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=2))


if __name__ == "__main__":
    main()
