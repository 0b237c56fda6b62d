"""Two-stage prompt rephrasing: the offline backend (rules + MiniLM) and the LLM backend on a local fake endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import numpy as np
import pytest

from libragen.infer.rephrase import (
    CaptionVocabulary,
    LLMRephraser,
    OfflineRephraser,
    RephraseError,
    describe_reference,
    make_rephraser,
    normalise_words,
)
from libragen.world.caption import caption
from libragen.world.config import WorldConfig
from libragen.world.identity import COLOURS
from libragen.world.plan import plan_world


@pytest.fixture(scope="module")
def offline() -> OfflineRephraser:
    return OfflineRephraser()


def test_keyword_rules_apply_once():
    assert normalise_words("jumps fast westward") == "hops quickly to the left"
    assert normalise_words("hops quickly to the left") == "hops quickly to the left"  # no "to the to the left"
    assert normalise_words("a red star drifts up") == "a red star-shaped glides upward"


def test_vocabulary_is_parsed_from_the_caption_grammar():
    vocab = CaptionVocabulary.from_captions(
        [
            "Ref 1[a red round creature] hops quickly to the left and Ref 2[a blue oval creature] glides slowly "
            "upward on a brick wall, while the camera pans right.",
            "Ref 1[a green square creature] zigzags slowly downward, growing on snowy ground.",
            "a free-form caption from real footage",
        ]
    )
    assert vocab.subjects == ["a blue oval creature", "a green square creature", "a red round creature"]
    assert vocab.actions == ["glides slowly upward", "hops quickly to the left", "zigzags slowly downward, growing"]
    assert vocab.scenes == ["a brick wall", "snowy ground"] and vocab.pans == ["right"] and vocab.structured
    assert not CaptionVocabulary.from_captions(["a dog runs on a beach"]).structured
    with pytest.raises(ValueError, match="no captions"):
        CaptionVocabulary.from_captions(["  "])


def test_a_training_caption_comes_back_unchanged(offline):
    for spec in plan_world(WorldConfig(), 6, seed=5):
        text = caption(spec)
        out = offline(text, [f"ref {k}" for k in range(len(spec.subjects))])
        assert out.final == text and out.tagged == text and out.reference_order == list(range(len(spec.subjects)))


def test_paraphrase_becomes_the_training_caption_with_tags_in_mention_order(offline):
    out = offline(
        "a green circle bounces fast to the right and a yellow egg slides slowly upward over the snow "
        "as the camera pans left",
        ["a yellow creature", "a green creature"],  # the user gave the yellow one's image first
    )
    assert out.tagged.startswith("Ref 1[a green circle] bounces fast to the right and Ref 2[a yellow egg]")
    assert out.final == (
        "Ref 1[a green round creature] hops quickly to the right and Ref 2[a yellow oval creature] glides slowly "
        "upward on snowy ground, while the camera pans left."
    )
    assert out.reference_order == [1, 0]  # Ref 1 (green) is the second image
    assert out.backend == "offline" and len(out.exemplars) == 5


def test_unseen_colour_shape_pairs_are_composed_and_text_only_prompts_lose_their_tags(offline):
    from libragen.world.identity import RESERVED_COMBOS

    shape, colour = sorted(RESERVED_COMBOS)[0]
    assert f"a {colour} {shape} creature" not in offline.vocabulary.subjects  # never in a training caption
    out = offline(f"a {colour} {shape} creature hops slowly downward on a brick wall")
    assert "Ref" not in out.final
    assert out.final.replace("an ", "a ") == f"a {colour} {shape} creature hops slowly downward on a brick wall."


def test_text_only_prompts_keep_every_subject(offline):
    out = offline("On bricks, a red star leaps rapidly westward and one blue ball drifts slowly upward")
    assert out.final == (
        "a red star-shaped creature hops quickly to the left and a blue round creature glides slowly upward "
        "on a brick wall."
    ), out.final


def test_unmentioned_references_still_get_a_tag(offline):
    out = offline("something glides quickly upward on a sandy beach", ["a red creature"])
    assert out.tagged.startswith("Ref 1[a red creature]") and out.reference_order == [0]
    assert out.final.startswith("Ref 1[a red ") and out.final.endswith("glides quickly upward on a sandy beach.")


def test_describe_reference_names_the_dominant_colour():
    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:24, 8:24] = COLOURS["purple"]
    image[14:18, 14:18] = 20  # dark marking
    assert describe_reference(image) == "a purple creature"
    assert describe_reference(np.full((8, 8, 3), 255, np.uint8)) == "the subject"


class FakeChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint: stage 1 tags, stage 2 answers a fixed caption; records requests."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeChat.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        system = body["messages"][0]["content"]
        if "tag the subjects" in system:
            answer = "Ref 1[the pink one] hops and Ref 2[the blue one] rests (images: 2, 1)"
        else:
            answer = "Ref 1[a pink round creature] hops quickly upward and Ref 2[a blue oval creature] ..."
        payload = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_llm_backend_speaks_openai_chat_completions():
    server = HTTPServer(("127.0.0.1", 0), FakeChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        vocab = CaptionVocabulary.from_captions(["Ref 1[a red round creature] hops quickly upward on a brick wall."])
        llm = LLMRephraser(f"http://127.0.0.1:{server.server_port}/v1", "tiny-chat", vocab, api_key="k")
        out = llm("the pink one hops and the blue one rests", ["a blue creature", "a pink creature"])
    finally:
        server.shutdown()
    assert out.tagged == "Ref 1[the pink one] hops and Ref 2[the blue one] rests"
    assert out.reference_order == [1, 0] and out.backend == "llm"
    assert out.final.startswith("Ref 1[a pink round creature]")
    first, second = FakeChat.requests[-2:]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer k"
    assert second["body"]["model"] == "tiny-chat"
    assert "Ref 1[a red round creature] hops quickly upward" in second["body"]["messages"][1]["content"]  # exemplar


def test_llm_backend_errors_are_clear():
    llm = LLMRephraser("http://127.0.0.1:9/v1", "m", CaptionVocabulary.from_captions(["a caption"]), timeout=2)
    with pytest.raises(RephraseError, match="rephrase endpoint"):
        llm("a prompt", ["a red creature"])
    with pytest.raises(ValueError, match="endpoint URL and a model"):
        make_rephraser("llm")
    with pytest.raises(ValueError, match="unknown rephrase backend"):
        make_rephraser("gpt")
    assert make_rephraser("none") is None
