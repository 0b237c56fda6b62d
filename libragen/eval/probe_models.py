"""Small networks that read LibraWorld truth from pixels: the attribute probe and the identity encoder.

Both are trained only on *real* LibraWorld clips (never on generated ones) by
:mod:`libragen.eval.probe_train`, and ship as small safetensors files.

* :class:`AttributeProbe` — given a video and a query subject (colour, shape), says whether that
  subject is present and which way it moves; also classifies the scene and the subject count. The
  query attends over each frame's feature map, led by the queried colour; presence factors into
  "is this colour there" x "is the subject wearing it of this shape". The shape is read from a
  colour-free *silhouette* (each pixel's affinity to the queried colour) by its own small CNN, so it
  cannot lean on colour: colour–shape combinations never seen together in training (the held-out
  split's reserved ones) are read as well as the others. The attention centroid over time gives the
  motion.
* :class:`IdentityEncoder` — embeds a subject so the same identity (glyph, accent, shape, colour)
  lands close whatever the pose, scale or background. Fully convolutional: :meth:`embed_windows`
  embeds every window of a frame at once, so a generated video needs no detector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from libragen.world.identity import COLOUR_NAMES, COLOURS, SHAPES
from libragen.world.scene import SCENE_NAMES

DIRECTION_NAMES: tuple[str, ...] = ("left", "right", "up", "down", "none")
MAX_SUBJECTS = 4


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.SiLU())


def _trunk(widths: tuple[int, int, int]) -> nn.Sequential:
    """Stride-4 feature extractor: a 4x4/2 patch stem, then 3x3 convs (one of them strided)."""
    a, b, c = widths
    stem = nn.Sequential(nn.Conv2d(3, a, 4, 2, 1), nn.BatchNorm2d(a), nn.SiLU())
    return nn.Sequential(stem, _conv(a, b), _conv(b, c, 2), _conv(c, c))


def normalise_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC / NTHWC -> float channels-first in [-1, 1]."""
    x = x.float() / 127.5 - 1.0
    return x.movedim(-1, -3)


def colour_distance(pixels: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Squared distance of pixels (B, T, 3, *S) to query colours (B, Q, 3), both in [-1, 1] -> (B, Q, T, *S)."""
    flat = pixels.flatten(3)[:, None]  # (B, 1, T, 3, N)
    distance = ((flat - colours[:, :, None, :, None]) ** 2).sum(dim=3)
    return distance.unflatten(-1, pixels.shape[3:])


class AttributeProbe(nn.Module):
    """Query-conditioned video probe: presence + direction of a (colour, shape) subject, scene, count."""

    def __init__(self, channels: int = 64, frames: int = 8) -> None:
        super().__init__()
        self.frames = frames
        self.trunk = _trunk((32, 48, channels))
        self.colour = nn.Embedding(len(COLOUR_NAMES), channels)
        self.shape = nn.Embedding(len(SHAPES), channels)
        self.keys = nn.Conv2d(channels, channels, 1)
        self.colour_present = nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 1))
        self.silhouette_log_sigma = nn.Parameter(torch.tensor(-1.2))
        self.silhouette_trunk = nn.Sequential(  # receptive field 29 px: the largest subject (26 px) whole
            nn.Conv2d(1, 16, 3, 1, 1),
            nn.SiLU(),
            _conv(16, 32, 2),
            _conv(32, 48),
            _conv(48, 64, 2),
            _conv(64, 64),
            _conv(64, 64),
        )
        self.shape_of = nn.Sequential(nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, len(SHAPES)))
        colours = torch.tensor([COLOURS[name] for name in COLOUR_NAMES], dtype=torch.float32) / 127.5 - 1.0
        self.register_buffer("colour_rgb", colours, persistent=False)
        self.colour_log_sigma = nn.Parameter(torch.tensor(-1.2))
        self.direction = nn.Sequential(
            nn.Linear(2 * frames + channels, channels), nn.SiLU(), nn.Linear(channels, len(DIRECTION_NAMES))
        )
        self.scene = nn.Linear(2 * channels, len(SCENE_NAMES))
        self.count = self._count_head(channels)  # on the map's maximum over time: where subjects went
        self.count_per_frame = self._count_head(channels)  # on each frame: crossing paths are apart in some
        self.channels = channels

    @staticmethod
    def _count_head(channels: int, grid: int = 16) -> nn.Sequential:
        """Subject-count logits from a (N, C, h, w) map; pooled to ``grid`` cells, since counting needs the layout."""
        return nn.Sequential(
            nn.Conv2d(channels, 8, 1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),
            nn.Linear(8 * grid * grid, channels),
            nn.SiLU(),
            nn.Linear(channels, MAX_SUBJECTS),
        )

    def count_logits(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, MAX_SUBJECTS) logits of 1..MAX_SUBJECTS subjects from feature maps (B, T, C, h, w)."""
        per_frame = self.count_per_frame(maps.flatten(0, 1)).unflatten(0, maps.shape[:2]).mean(1)
        return self.count(maps.amax(dim=1)) + per_frame

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, T, C, h, w) feature maps."""
        b, t = video.shape[:2]
        maps = self.trunk(normalise_pixels(video.flatten(0, 1)))
        return maps.unflatten(0, (b, t))

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, 2C) mean and max over time and space: the global video embedding."""
        return torch.cat([maps.mean(dim=(1, 3, 4)), maps.amax(dim=(1, 3, 4))], dim=1)

    def colour_affinity(self, video: torch.Tensor, colour: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, Q, T, h*w) log-affinity of each feature cell's mean colour to the queried body colour.

        A prior that tells the attention where the queried colour is; the learned keys add shape.
        """
        b, t = video.shape[:2]
        pixels = F.adaptive_avg_pool2d(normalise_pixels(video.flatten(0, 1)), grid).unflatten(0, (b, t))
        distance = colour_distance(pixels.flatten(3), self.colour_rgb[colour])  # (B, Q, T, hw)
        return -distance / (2 * self.colour_log_sigma.exp() ** 2)

    def silhouette(self, video: torch.Tensor, colour: torch.Tensor, frames: int = 4) -> torch.Tensor:
        """(B, Q, F, H, W) full-resolution affinity of each pixel to the queried body colour, on ``frames`` frames.

        Shading keeps a body within ~20 % of its colour, so the affinity is a soft mask of every subject
        wearing that colour; it carries the outline and nothing of the colour itself.
        """
        picks = torch.linspace(0, video.shape[1] - 1, min(frames, video.shape[1])).round().long()
        distance = colour_distance(normalise_pixels(video[:, picks]), self.colour_rgb[colour])  # (B, Q, F, H, W)
        return torch.exp(-distance / (2 * self.silhouette_log_sigma.exp() ** 2))

    def shape_logits(self, video: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        """(B, Q, shapes) shape of the subject wearing each queried colour, read from its silhouette."""
        masks = self.silhouette(video, colour)
        b, q, f = masks.shape[:3]
        features = self.silhouette_trunk(masks.flatten(0, 2).unsqueeze(1)).amax(dim=(2, 3))  # (BQF, 64)
        return self.shape_of(features.unflatten(0, (b, q, f)).mean(2))

    def query(
        self, maps: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor, video: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Heads for queries (B, Q) of colour/shape indices against maps (B, T, C, h, w) of ``video``."""
        b, t, c, h, w = maps.shape
        q = self.colour(colour) + self.shape(shape)  # (B, Q, C)
        keys = self.keys(maps.flatten(0, 1)).unflatten(0, (b, t)).flatten(3)  # (B, T, C, hw)
        prior = self.colour_affinity(video, colour, (h, w))
        logits = torch.einsum("bqc,btcn->bqtn", q, keys) / c**0.5 + prior  # (B, Q, T, hw)
        attention = logits.softmax(dim=-1)
        values = maps.flatten(3)  # (B, T, C, hw)
        pooled = torch.einsum("bqtn,btcn->bqtc", attention, values)  # (B, Q, T, C)
        ys = torch.linspace(-1, 1, h, device=maps.device).repeat_interleave(w)
        xs = torch.linspace(-1, 1, w, device=maps.device).repeat(h)
        centroid = torch.stack([(attention * xs).sum(-1), (attention * ys).sum(-1)], dim=-1)  # (B, Q, T, 2)
        peak, prior_peak = logits.amax(dim=-1), prior.amax(dim=-1)  # (B, Q, T)
        stats = [
            peak.mean(2, keepdim=True),
            peak.amax(2, keepdim=True),
            prior_peak.mean(2, keepdim=True),
            prior_peak.amax(2, keepdim=True),
        ]
        colour_logit = self.colour_present(torch.cat(stats, dim=-1)).squeeze(-1)  # (B, Q)
        shape_logits = self.shape_logits(video, colour)  # (B, Q, shapes)
        shape_prob = shape_logits.softmax(-1).gather(-1, shape.unsqueeze(-1)).squeeze(-1)
        motion = (centroid - centroid[:, :, :1]).flatten(2)
        direction_in = torch.cat([motion, pooled.mean(2)], dim=-1)
        return {
            "colour_logit": colour_logit,
            "shape_logits": shape_logits,
            "present": torch.sigmoid(colour_logit) * shape_prob,  # probability the queried subject is there
            "direction": self.direction(direction_in),
            "centroid": centroid,
        }

    def forward(self, video: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.features(video)
        out = self.query(maps, colour, shape, video)
        pooled = self.pooled(maps)
        out["scene"] = self.scene(pooled)
        out["count"] = self.count_logits(maps)
        out["embedding"] = pooled
        return out


class IdentityEncoder(nn.Module):
    """Subject identity embedding; a window of ``window`` px seen with ``context`` px around it.

    The head is a convolution over the whole window's feature map (not a mean over it), so the embedding
    keeps *where* the glyph's accent cells sit — the only thing telling apart identities that share shape,
    colour and accent.
    """

    window = 32
    context = 8
    stride = 4

    def __init__(self, channels: int = 96, dim: int = 128) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*_trunk((32, 64, channels)), _conv(channels, channels))
        self.head = nn.Conv2d(channels, dim, self._cells())

    def _cells(self) -> int:
        return self.window // self.stride

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, window + 2 * context, same, 3) uint8 crops -> (N, dim) unit embeddings of the centre window."""
        maps = self.trunk(normalise_pixels(crops))
        margin = self.context // self.stride
        centre = maps[:, :, margin : margin + self._cells(), margin : margin + self._cells()]
        return F.normalize(self.head(centre).flatten(1), dim=1)

    def embed_windows(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames -> (N, dim, h', w') unit embeddings of every window (stride 4 px)."""
        return F.normalize(self.head(self.trunk(normalise_pixels(frames))), dim=1)
