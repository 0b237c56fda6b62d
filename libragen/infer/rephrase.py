"""Two-stage prompt rephrasing: what users type -> the captions the model was trained on.

Stage 1 (:meth:`Rephraser.tag`): the free prompt and the references become a Ref-tagged description.
Each subject mention the references stand for is wrapped as ``Ref k[...]``; tags are numbered in the
order the subjects are mentioned (as in training captions) and ``reference_order`` says which
reference image goes with which tag, so the pipeline passes the images in that order.
Stage 2 (:meth:`Rephraser.restyle`): the tagged description is rewritten in the training-caption style.

Backends:

* :class:`OfflineRephraser` (default): rules + MiniLM retrieval over the training captions. The
  captions are parsed into their phrase vocabulary (subject phrases, actions, scenes, camera moves).
  Each part of the user's text is first normalised with keyword rules (``leaps`` -> ``hops``,
  ``westward`` -> ``to the left`` …), then mapped to the nearest phrase of its kind by MiniLM cosine
  similarity plus word overlap (the overlap keeps left/right and slowly/quickly apart, which sentence
  embeddings blur), and the parts are assembled with the captions' own grammar. Captions without that
  grammar (real footage) get stage 1 and light normalisation only; the nearest captions are still
  reported as exemplars.
* :class:`LLMRephraser`: any OpenAI-compatible chat-completions endpoint the user gives; both stages
  are one request each, with the nearest training captions as style examples.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch

from libragen.pairs.captions import REF_TAG as TAG
from libragen.world.caption import join_clauses

#: The training-caption grammar: ``Ref 1[…] action, Ref 2[…] action and Ref 3[…] action on SCENE[, while the
#: camera pans DIR].`` (libragen.world.caption writes it).
CAPTION = re.compile(r"^(?P<subjects>Ref \d+\[.+?) on (?P<scene>[^,]+?)(?:, while the camera pans (?P<pan>\w+))?\.$")
SUBJECT_NOUNS = (
    "creature|creatures|subject|character|thing|shape|figure|object|blob|critter|animal|toy|one|"
    "person|man|woman|boy|girl|dog|cat|bird|car|ball|star|square|circle|triangle|diamond|hexagon|oval|cross"
)
CAMERA = re.compile(
    r",?\s*(?:while|as|and|with)?\s*(?:the\s+)?camera\s+(?:\w+\s+)?(?:pans|pan|panning|moves|moving|tracks|tracking|sweeps|slides|drifts)"
    r"\s+(?:to(?:ward|wards)?\s+the\s+)?(?P<dir>left|right|up|down|upward|downward)\w*",
    re.IGNORECASE,
)
#: User words -> training-caption words (applied before retrieval; whole words, case-insensitive).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "to the left": ("leftwards?", "westwards?", "to the west", "towards? the left", "left side", "left"),
    "to the right": ("rightwards?", "eastwards?", "to the east", "towards? the right", "right side", "right"),
    "upward": ("upwards", "up", "skywards?", "towards? the top", "to the top", "north"),
    "downward": ("downwards", "down", "towards? the bottom", "to the bottom", "south"),
    "quickly": ("fast", "rapidly", "swiftly", "speedily", "quick", "briskly", "at speed", "hastily"),
    "slowly": ("slow", "leisurely", "gently", "lazily", "unhurriedly", "gradually", "calmly"),
    "hops": ("jumps", "jumping", "leaps", "leaping", "bounces", "bouncing", "hopping", "hop"),
    "glides": ("slides", "sliding", "floats", "floating", "drifts", "drifting", "moves", "moving", "travels", "glide"),
    "zigzags": ("zig-zags", "zig zags", "zigzagging", "weaves", "weaving", "zigzag"),
    "spins in place": ("rotates", "rotating", "twirls", "twirling", "spins", "spinning", "turns around"),
    "stays still": ("stands still", "remains still", "rests", "does not move", "doesn't move", "motionless", "still"),
    ", growing": ("grows", "gets bigger", "getting bigger", "expands", "expanding", "growing larger"),
    ", shrinking": ("shrinks", "gets smaller", "getting smaller", "shrinking"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {  # LibraWorld's shape adjectives
    "round": ("circle", "circular", "ball", "disc", "disk"),
    "square": ("box", "cube", "block", "squared"),
    "triangular": ("triangle", "pyramid"),
    "diamond": ("rhombus", "lozenge"),
    "hexagonal": ("hexagon",),
    "star-shaped": ("star", "starry"),
    "cross-shaped": ("cross", "plus", "plus-shaped"),
    "oval": ("ellipse", "elliptical", "egg", "egg-shaped", "oblong"),
}
_REPLACEMENTS = {target: target for target in [*SYNONYMS, *SHAPE_WORDS] if not target.startswith(",")}
_REPLACEMENTS |= {word: target for target, group in (SYNONYMS | SHAPE_WORDS).items() for word in group}
_SHAPE_NOUNS = sorted({w for target, group in SHAPE_WORDS.items() for w in (target, *group)}, key=len, reverse=True)
_NOUNS = SUBJECT_NOUNS + "|" + "|".join(map(re.escape, _SHAPE_NOUNS))
MENTION = re.compile(rf"\b(?:a|an|the|one|another)\s+(?:[\w-]+\s+){{0,3}}(?:{_NOUNS})(?![\w-])", re.IGNORECASE)
#: One pass, longest alternative first, so a replacement is never replaced again ("left" -> "to the left").
_SYNONYM_RULE = re.compile(
    r"(?<![\w-])(" + "|".join(sorted(_REPLACEMENTS, key=len, reverse=True)) + r")(?![\w-])", re.IGNORECASE
)
_WORD = re.compile(r"[a-z]+")


@dataclass
class Rephrased:
    """One prompt through both stages; saved beside the video it made."""

    user_prompt: str
    tagged: str  # stage 1: Ref-tagged description
    final: str  # stage 2: what the model reads
    reference_order: list[int]  # reference image indices in tag order (Ref 1 first)
    backend: str
    exemplars: list[str] = field(default_factory=list)  # nearest training captions

    def to_dict(self) -> dict:
        return asdict(self)


class RephraseError(RuntimeError):
    """The LLM backend could not be reached or answered something unusable."""


def normalise_words(text: str) -> str:
    """Apply the keyword rules: user words become training-caption words (one pass)."""

    def replace(match: re.Match) -> str:
        found = match.group(0).lower()
        for pattern, target in _REPLACEMENTS.items():
            if re.fullmatch(pattern, found):
                return target.lstrip(", ")
        return found

    return re.sub(r"\s+", " ", _SYNONYM_RULE.sub(replace, text)).strip()


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


@cache
def _embedder():
    from libragen.models.text import shared_minilm

    return shared_minilm()


def embed(texts: Sequence[str]) -> torch.Tensor:
    """(N, 384) unit MiniLM sentence embeddings (mean of the token features, as all-MiniLM-L6-v2 is trained)."""
    if not texts:
        return torch.zeros(0, 384)
    batch = _embedder()(list(texts))
    mask = batch.mask.unsqueeze(-1).float()
    pooled = (batch.tokens * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


class PhraseIndex:
    """Nearest phrase by MiniLM cosine similarity plus word overlap (Jaccard).

    Large indexes (thousands of captions) are first cut to the ``shortlist`` phrases sharing the
    most words with the query, so only those are ever embedded.
    """

    def __init__(self, phrases: Sequence[str], overlap_weight: float = 1.0, shortlist: int = 64) -> None:
        self.phrases = list(dict.fromkeys(phrases))
        self.overlap_weight = overlap_weight
        self.shortlist = shortlist
        self._words = [words(p) for p in self.phrases]
        self._vectors: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.phrases)

    def _overlap(self, query: str) -> np.ndarray:
        query_words = words(query)
        return np.array([len(query_words & w) / max(1, len(query_words | w)) for w in self._words])

    def scores(self, query: str) -> np.ndarray:
        """Score of every phrase (phrases outside the shortlist get their word overlap only, minus 1)."""
        overlap = self._overlap(query)
        if len(self.phrases) > self.shortlist:
            candidates = np.argsort(-overlap, kind="stable")[: self.shortlist].tolist()
        else:
            candidates = list(range(len(self.phrases)))
        new = [i for i in candidates if i not in self._vectors]
        for i, vector in zip(new, embed([self.phrases[i] for i in new]), strict=True):
            self._vectors[i] = vector
        scores = self.overlap_weight * overlap - 1.0
        cosine = torch.stack([self._vectors[i] for i in candidates]) @ embed([query])[0]
        scores[candidates] = cosine.numpy() + self.overlap_weight * overlap[candidates]
        return scores

    def nearest(self, query: str, k: int = 1) -> list[str]:
        if not self.phrases:
            return []
        order = np.argsort(-self.scores(query), kind="stable")[:k]
        return [self.phrases[i] for i in order]


@dataclass
class CaptionVocabulary:
    """The training captions and, where they follow the caption grammar, their phrases by kind."""

    captions: list[str]
    subjects: list[str] = field(default_factory=list)  # tag contents: "a red round creature"
    actions: list[str] = field(default_factory=list)  # "hops quickly to the left", "stays still, growing"
    scenes: list[str] = field(default_factory=list)  # "a brick wall"
    pans: list[str] = field(default_factory=list)  # "right"

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> CaptionVocabulary:
        vocab = cls(list(dict.fromkeys(c.strip() for c in captions if c.strip())))
        if not vocab.captions:
            raise ValueError("no captions to learn the caption style from")
        subjects, actions, scenes, pans = set(), set(), set(), set()
        for caption in vocab.captions:
            match = CAPTION.match(caption)
            if not match:
                continue
            scenes.add(match["scene"])
            if match["pan"]:
                pans.add(match["pan"])
            for phrase, action in split_subjects(match["subjects"]):
                subjects.add(phrase)
                if action:
                    actions.add(action)
        vocab.subjects, vocab.actions, vocab.scenes, vocab.pans = (
            sorted(subjects),
            sorted(actions),
            sorted(scenes),
            sorted(pans),
        )
        return vocab

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CaptionVocabulary:
        """Captions from a .txt (one per line), a .jsonl (``caption`` field) or a manifest .parquet/folder."""
        p = Path(path)
        if p.is_dir() or p.suffix == ".parquet":
            from libragen.world.manifest import read_manifest

            return cls.from_captions([r["caption"] for r in read_manifest(p) if r.get("caption")])
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such caption file")
        lines = p.read_text(encoding="utf-8").splitlines()
        if p.suffix == ".jsonl":
            return cls.from_captions([json.loads(line)["caption"] for line in lines if line.strip()])
        return cls.from_captions(lines)

    @classmethod
    @cache
    def libraworld(cls, n: int = 3000, seed: int = 0) -> CaptionVocabulary:
        """Captions of LibraWorld's training split (planned, not rendered: well under a second)."""
        from libragen.world.caption import caption
        from libragen.world.config import WorldConfig
        from libragen.world.plan import plan_world

        return cls.from_captions([caption(spec) for spec in plan_world(WorldConfig(), n, seed=seed)])

    @property
    def structured(self) -> bool:
        return bool(self.actions and self.scenes)


def split_subjects(text: str) -> list[tuple[str, str]]:
    """``Ref 1[p] a, Ref 2[q] b and …`` -> [(p, a), (q, b), …] with the list glue removed."""
    tags = list(TAG.finditer(text))
    parts = []
    for i, tag in enumerate(tags):
        end = tags[i + 1].start() if i + 1 < len(tags) else len(text)
        action = re.sub(r"(?:,|\band|\bwith)\s*$", "", text[tag.end() : end].strip()).strip(" ,")
        parts.append((tag[2].strip(), action))
    return parts


def tag_mentions(text: str, mentions: Sequence[re.Match]) -> str:
    """``text`` with each of ``mentions`` (matches in it, in text order) wrapped as ``Ref k[…]``, k = 1, 2, …"""
    pieces, cursor = [], 0
    for number, mention in enumerate(mentions, 1):
        pieces += [text[cursor : mention.start()], f"Ref {number}[{mention.group(0)}]"]
        cursor = mention.end()
    pieces.append(text[cursor:])
    return "".join(pieces)


def describe_reference(image: np.ndarray) -> str:
    """A short description of a reference image: its dominant colour among LibraWorld's colour names.

    Good enough to tell which reference a prompt's "the red one" means; give real descriptions
    (``--ref-desc``) for real photos.
    """
    from libragen.world.identity import COLOURS

    pixels = image.reshape(-1, image.shape[-1])[:, :3].astype(np.float32)
    saturation = pixels.max(1) - pixels.min(1)
    subject = pixels[saturation > 60]
    if len(subject) == 0:
        return "the subject"
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], np.float32)
    votes = np.bincount(((subject[:, None] - palette[None]) ** 2).sum(-1).argmin(1), minlength=len(names))
    return f"a {names[int(votes.argmax())]} creature"


class Rephraser:
    """Both stages; subclasses implement them. ``__call__`` runs stage 1 then stage 2."""

    name = "none"

    def __init__(self, vocabulary: CaptionVocabulary) -> None:
        self.vocabulary = vocabulary
        self._captions = PhraseIndex(vocabulary.captions, overlap_weight=0.5)

    def exemplars(self, text: str, k: int = 5) -> list[str]:
        return self._captions.nearest(text, k)

    def tag(self, prompt: str, reference_descriptions: Sequence[str]) -> tuple[str, list[int]]:
        raise NotImplementedError

    def restyle(self, tagged: str, exemplars: Sequence[str]) -> str:
        raise NotImplementedError

    def __call__(self, prompt: str, reference_descriptions: Sequence[str] = ()) -> Rephrased:
        prompt = prompt.strip()
        tagged, order = self.tag(prompt, reference_descriptions)
        exemplars = self.exemplars(tagged)
        final = self.restyle(tagged, exemplars)
        if not reference_descriptions:  # a text-only model was trained on captions without tags
            from libragen.world.caption import plain_caption

            tagged, final = plain_caption(tagged), plain_caption(final)
        return Rephrased(prompt, tagged, final, order, self.name, exemplars)


class OfflineRephraser(Rephraser):
    """Rules + MiniLM retrieval over the training captions (see the module docstring)."""

    name = "offline"

    def __init__(self, vocabulary: CaptionVocabulary | None = None) -> None:
        super().__init__(vocabulary or CaptionVocabulary.libraworld())
        v = self.vocabulary
        self._slots: dict[tuple[int, int], set[str]] = {}  # (phrase length, position) -> words seen there
        for phrase in v.subjects:
            tokens = phrase.split()
            for position, word in enumerate(tokens):
                self._slots.setdefault((len(tokens), position), set()).add(word)
        self._subjects, self._actions, self._scenes = (
            PhraseIndex(v.subjects),
            PhraseIndex(v.actions),
            PhraseIndex(v.scenes),
        )

    # -- stage 1 ----------------------------------------------------------------------------------
    def tag(self, prompt: str, reference_descriptions: Sequence[str]) -> tuple[str, list[int]]:
        count = len(reference_descriptions)
        if TAG.search(prompt) or count == 0:
            return prompt, list(range(count))
        mentions = list(MENTION.finditer(prompt))
        chosen = self._assign(mentions, reference_descriptions)
        # wrap the chosen mentions in tags numbered in order of appearance
        in_text_order = sorted(chosen.items(), key=lambda item: mentions[item[0]].start())
        order = [ref for _, ref in in_text_order]
        tagged = tag_mentions(prompt, [mentions[m] for m, _ in in_text_order])
        missing = [ref for ref in range(count) if ref not in order]
        if missing:  # references the prompt never mentions become subjects of their own
            extra = join_clauses(
                [f"Ref {len(order) + i + 1}[{reference_descriptions[r]}]" for i, r in enumerate(missing)]
            )
            prefixed = f"{extra} {tagged[:1].lower()}{tagged[1:]}"
            tagged = f"{tagged.rstrip('. ')}, with {extra}." if order else prefixed
            order += missing
        return tagged, order

    @staticmethod
    def _assign(mentions: list[re.Match], descriptions: Sequence[str]) -> dict[int, int]:
        """mention index -> reference index: shared words first (greedy), then order of appearance."""
        pairs = sorted(
            (
                (len(words(m.group(0)) & (words(d) - {"a", "an", "the", "creature"})), -i, -r, i, r)
                for i, m in enumerate(mentions)
                for r, d in enumerate(descriptions)
            ),
            reverse=True,
        )
        chosen: dict[int, int] = {}
        for shared, _, _, i, r in pairs:
            if shared and i not in chosen and r not in chosen.values():
                chosen[i] = r
        free_refs = [r for r in range(len(descriptions)) if r not in chosen.values()]
        for i in range(len(mentions)):
            if i not in chosen and free_refs:
                chosen[i] = free_refs.pop(0)
        return chosen

    # -- stage 2 ----------------------------------------------------------------------------------
    def restyle(self, tagged: str, exemplars: Sequence[str]) -> str:
        text = " ".join(tagged.split()).rstrip(". ")
        if not self.vocabulary.structured:
            return text[:1].lower() + text[1:] + "." if not text.startswith("Ref") else text + "."
        pan = None
        camera = CAMERA.search(text)
        if camera:
            pan = normalise_words(camera["dir"]).replace("to the ", "").replace("ward", "").strip()
            pan = {"up": "up", "down": "down"}.get(pan, pan)
            text = (text[: camera.start()] + text[camera.end() :]).strip(" ,")
        subjects = split_subjects(text) or self._untagged_subjects(text)
        # the scene: the tail (after a preposition) of some subject's text that reads most like a scene
        splits = [self._split_scene(action) for _, action in subjects]
        where = int(np.argmax([score for _, _, score in splits]))
        actions = [action for _, action in subjects]
        actions[where], scene = splits[where][0], splits[where][1]
        clauses = []
        for (phrase, _), action in zip(subjects, actions, strict=True):
            subject = self._subject(normalise_words(phrase or text))
            clauses.append(f"Ref {len(clauses) + 1}[{subject}] {self._action(action)}")
        caption = f"{join_clauses(clauses)} on {scene}"
        if pan and pan in self.vocabulary.pans:
            caption += f", while the camera pans {pan}"
        return caption + "."

    @staticmethod
    def _untagged_subjects(text: str) -> list[tuple[str, str]]:
        """Subjects of a prompt without Ref tags (text only): with two or more subject mentions ("a red star …
        and a blue box …"), each mention and the words up to the next one; words before the first mention (often the
        scene: "On a brick wall, …") go to the last subject. One mention or none: the whole prompt is one subject."""
        mentions = list(MENTION.finditer(text))
        if len(mentions) < 2:
            return [("", text)]
        subjects = split_subjects(tag_mentions(text, mentions))
        preamble = text[: mentions[0].start()].strip(" ,")
        if preamble:
            phrase, action = subjects[-1]
            subjects[-1] = (phrase, f"{action} {preamble[:1].lower()}{preamble[1:]}".strip())
        return subjects

    def _subject(self, text: str) -> str:
        """The nearest subject phrase, with each word slot the query names exactly put in.

        Subject phrases share one shape ("a red round creature"), so a combination no training caption
        has (a held-out colour-shape pair) is still written: slot by slot from the query's own words.
        """
        tokens = self._subjects.nearest(text)[0].split()
        query = text.lower().split()
        for position in range(1, len(tokens)):
            options = self._slots.get((len(tokens), position), set())
            named = [word for word in query if word in options]
            if len(options) > 1 and named:
                tokens[position] = named[0]
        if tokens[0] in ("a", "an") and len(tokens) > 1:
            tokens[0] = "an" if tokens[1][0] in "aeiou" else "a"
        return " ".join(tokens)

    def _action(self, text: str) -> str:
        normalised = normalise_words(text)
        if not normalised:
            return "stays still" if "stays still" in self._actions.phrases else self._actions.phrases[0]
        return self._actions.nearest(normalised)[0]

    def _split_scene(self, text: str) -> tuple[str, str, float]:
        """(text before the scene, nearest scene, score): the tail after the preposition most like a scene."""
        best = (text, self._scenes.nearest(text)[0], -np.inf)
        for cut in re.finditer(r"\b(?:on|in|over|across|along|against|atop|upon|at|through)\s+", text):
            tail = text[cut.end() :]
            if tail:
                scores = self._scenes.scores(tail)
                if scores.max() > best[2]:
                    best = (
                        text[: cut.start()].strip(" ,"),
                        self._scenes.phrases[int(scores.argmax())],
                        float(scores.max()),
                    )
        return best


class LLMRephraser(Rephraser):
    """Both stages through an OpenAI-compatible ``/chat/completions`` endpoint (no SDK needed)."""

    name = "llm"

    def __init__(
        self,
        endpoint: str,
        model: str,
        vocabulary: CaptionVocabulary | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(vocabulary or CaptionVocabulary.libraworld())
        self.endpoint = endpoint.rstrip("/")
        if not self.endpoint.endswith("/chat/completions"):
            self.endpoint += "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout

    def _complete(self, system: str, user: str) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "temperature": 0,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
            return str(answer["choices"][0]["message"]["content"]).strip()
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise RephraseError(f"rephrase endpoint {self.endpoint}: {error}") from None
        except (KeyError, IndexError, TypeError, ValueError):
            raise RephraseError(f"rephrase endpoint {self.endpoint}: not an OpenAI chat-completions answer") from None

    def tag(self, prompt: str, reference_descriptions: Sequence[str]) -> tuple[str, list[int]]:
        if TAG.search(prompt) or not reference_descriptions:
            return prompt, list(range(len(reference_descriptions)))
        refs = "\n".join(f"Image {i + 1}: {d}" for i, d in enumerate(reference_descriptions))
        answer = self._complete(
            "You tag the subjects of a video prompt with the reference images that show them. Wrap each subject's "
            "noun phrase as Ref k[phrase], numbering k = 1, 2, … in order of first mention, and append "
            "'(images: i, j, …)' giving the image number of Ref 1, Ref 2, …. Change nothing else.",
            f"Reference images:\n{refs}\n\nPrompt: {prompt}",
        )
        found = re.search(r"\(images?:\s*([\d,\s]+)\)\s*$", answer)
        tagged = answer[: found.start()].strip() if found else answer
        count = len(reference_descriptions)
        order = [int(x) - 1 for x in re.findall(r"\d+", found[1])] if found else list(range(count))
        if sorted(order) != list(range(count)):
            order = list(range(count))
        return tagged, order

    def restyle(self, tagged: str, exemplars: Sequence[str]) -> str:
        examples = "\n".join(f"- {e}" for e in exemplars)
        return self._complete(
            "Rewrite a video description in exactly the style of the example captions: same sentence shape, same "
            "vocabulary, keep every Ref k[...] tag and its number. Answer with the caption only.",
            f"Example captions:\n{examples}\n\nDescription: {tagged}",
        )


def make_rephraser(
    backend: str = "offline",
    captions: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    model: str | None = None,
) -> Rephraser | None:
    """``offline`` | ``llm`` | ``none`` (None); ``captions``: the training captions (default: LibraWorld's)."""
    vocabulary = CaptionVocabulary.from_file(captions) if captions else None
    if backend == "none":
        return None
    if backend == "offline":
        return OfflineRephraser(vocabulary)
    if backend == "llm":
        if not endpoint or not model:
            raise ValueError("the llm rephraser needs an endpoint URL and a model name")
        return LLMRephraser(endpoint, model, vocabulary)
    raise ValueError(f"unknown rephrase backend {backend!r}; use offline, llm or none")
