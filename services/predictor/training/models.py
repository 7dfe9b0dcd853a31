"""The three mix models: regressors from a mid/side log-mel clip (and context) to parameters.

All three share one interface, :class:`MixModel`: ``model(mel, context)`` with

* ``mel``: float32 tensor of shape ``(batch, 2, n_mels, frames)``, the mid/side log-mel
  spectrogram of :func:`services.predictor.features.log_mel` (about 0..1), of one
  :data:`CLIP_S`-second clip (:data:`CLIP_FRAMES` frames);
* ``context``: float32 tensor of shape ``(batch, context_size)``, the musical context of
  :func:`services.predictor.features.context_vector`;

and return a float32 tensor of shape ``(batch, n_out)`` in (0, 1) (a sigmoid): the normalised
learned parameters (:data:`services.predictor.training.targets.LEARNED`). Every head's bias
starts at 0, so an untrained model predicts 0.5 everywhere.

Before any layer sees it, :meth:`MixModel.forward` **normalises the clip's level**
(:func:`level_normalise`): the models judge the spectrum's shape, never the absolute level,
so a song's gain does not change its prediction. (Measured before this was added: a model
trained on generated songs, whose clean mixes all peak at -1 dBFS, read the damage off the
level; given the same songs brought to that peak its validation MAE went from 0.036 to 0.063.)

* ``baseline_cnn`` (:class:`BaselineCNN`): a small plain CNN; ignores the context.
* ``enhanced_cnn`` (:class:`EnhancedCNN`): a residual CNN conditioned on the context by FiLM,
  with frequency-aware pooling (statistics over time per mel band).
* ``ast`` (:class:`AST`): an Audio Spectrogram Transformer trained from scratch; ignores the
  context. Its positional embeddings are fixed to ``frames``: it only takes clips of exactly
  that length (inference averages over :data:`CLIP_S`-second clips, as training sees them).

:func:`build_model` builds one by name (:data:`MODEL_NAMES`). Each is sized to train for ten
epochs of 10,000 clips within 30 minutes on two CPU cores (``docs/training.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from services.predictor import features
from services.predictor.features import CLIP_S, CONTEXT_SIZE, DB_OFFSET, DB_SCALE, FLOOR_DB, N_MELS
from services.predictor.training.config import MODEL_NAMES

#: Spectrogram frames of one :data:`~services.predictor.features.CLIP_S`-second clip (345).
CLIP_FRAMES = features.frames_for(CLIP_S)
#: :func:`level_normalise` brings a clip's mid channel to this mean band power (dB on the
#: spectrogram's scale: the median of generated songs, so a typical clip hardly moves).
LEVEL_REFERENCE_DB = -50.0
_FLOOR = (FLOOR_DB - DB_OFFSET) / DB_SCALE


def level_normalise(mel: Tensor) -> Tensor:
    """Each clip's spectrogram shifted so its mid channel's mean band power reads
    :data:`LEVEL_REFERENCE_DB`: a gain applied to the audio before
    :func:`~services.predictor.features.log_mel` changes nothing after this (up to the floor).

    Parameters
    ----------
    mel : Tensor, shape (batch, 2, n_mels, frames)
        Mid/side log-mel spectrograms on the scale of ``log_mel``.

    Returns
    -------
    Tensor, same shape: both channels moved by the same number of dB per clip; values at the
    floor (digital silence) stay there and nothing moves below it.
    """
    power = torch.pow(10.0, (mel[:, 0] * DB_SCALE + DB_OFFSET) / 10.0).mean(dim=(1, 2))
    level_db = 10.0 * torch.log10(power.clamp_min(1e-30))
    shift = ((level_db - LEVEL_REFERENCE_DB) / DB_SCALE)[:, None, None, None]
    return torch.where(mel <= _FLOOR, mel, torch.clamp(mel - shift, min=_FLOOR))


class MixModel(nn.Module):
    """Base of the mix models: shapes, input checks and the sigmoid output.

    Subclasses implement :meth:`_forward`, returning logits of shape ``(batch, n_out)``.

    Parameters
    ----------
    n_out : int
        Number of predicted (normalised) parameters.
    n_mels : int
        Mel bands of the input spectrogram.
    frames : int
        Spectrogram frames of a clip (only :class:`AST` requires exactly this many).
    context_size : int
        Length of the context vector.
    """

    #: Whether :meth:`forward` reads ``context`` (the others accept and ignore it).
    uses_context: bool = False

    def __init__(self, *, n_out: int, n_mels: int, frames: int, context_size: int) -> None:
        super().__init__()
        for name, value in (
            ("n_out", n_out),
            ("n_mels", n_mels),
            ("frames", frames),
            ("context_size", context_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.n_out = n_out
        self.n_mels = n_mels
        self.frames = frames
        self.context_size = context_size

    def forward(self, mel: Tensor, context: Tensor) -> Tensor:
        """Predicted normalised parameters.

        Parameters
        ----------
        mel : Tensor, shape (batch, 2, n_mels, frames), float32
            Mid/side log-mel spectrogram, about 0..1.
        context : Tensor, shape (batch, context_size), float32
            Musical context vector.

        Returns
        -------
        Tensor, shape (batch, n_out), float32, in (0, 1)
        """
        if mel.ndim != 4 or mel.shape[1] != 2 or mel.shape[2] != self.n_mels:
            raise ValueError(
                f"mel must have shape (batch, 2, {self.n_mels}, frames), got {tuple(mel.shape)}"
            )
        if context.ndim != 2 or context.shape != (mel.shape[0], self.context_size):
            raise ValueError(
                f"context must have shape ({mel.shape[0]}, {self.context_size}), "
                f"got {tuple(context.shape)}"
            )
        return torch.sigmoid(self._forward(level_normalise(mel), context))

    def _forward(self, mel: Tensor, context: Tensor) -> Tensor:
        raise NotImplementedError


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _head(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    """A two-layer MLP whose last bias is 0 (outputs start at sigmoid(0) = 0.5)."""
    head = nn.Sequential(
        nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
    )
    nn.init.zeros_(head[-1].bias)
    return head


def _init_conv_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BaselineCNN(MixModel):
    """Plain CNN on the spectrogram; ignores the context.

    Layers: four blocks of conv 3×3 → BatchNorm → ReLU → max-pool 2×2 with 24, 48, 96 and 128
    channels, the first conv with stride 1×2 in time (mel × time: 64 × 345 → 64 × 173 → 32 × 87
    → 16 × 44 → 8 × 22 → 4 × 11), a 1×1 conv to 192 channels (BN, ReLU), global average pooling
    over mel and time, an MLP head (192 → 64 → ``n_out``, GELU, dropout 0.2) and a sigmoid.
    201,158 parameters (0.77 MiB of float32) for ``n_out = 6``. (Half the channels, 100k
    parameters, did worse at the same number of epochs in a comparison on an earlier data
    version: validation MAE 0.0363 against 0.0348.)

    It sees the spectrogram only, and only through a global average of its features: which
    band a feature came from is known to it only through the receptive field and the zero
    padding. The reference the two others have to beat.
    """

    def __init__(
        self,
        *,
        n_out: int,
        n_mels: int = N_MELS,
        frames: int = CLIP_FRAMES,
        context_size: int = CONTEXT_SIZE,
        channels: tuple[int, ...] = (24, 48, 96, 128),
        width: int = 192,
    ) -> None:
        super().__init__(n_out=n_out, n_mels=n_mels, frames=frames, context_size=context_size)
        layers: list[nn.Module] = []
        c_in = 2
        for i, c in enumerate(channels):
            stride = (1, 2) if i == 0 else (1, 1)  # halve time first: it is the long axis
            layers += [
                nn.Conv2d(c_in, c, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c_in = c
        layers += [nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = _head(width, 64, n_out, dropout=0.2)
        _init_conv_bn(self.features)

    def _forward(self, mel: Tensor, context: Tensor) -> Tensor:
        return self.head(self.features(mel).mean(dim=(2, 3)))


class _FiLMResBlock(nn.Module):
    """Residual block (conv-BN-ReLU-conv-BN, FiLM, + shortcut, ReLU).

    FiLM (Perez et al., 2018): ``x * (1 + gamma) + beta`` per channel, with ``gamma`` and
    ``beta`` given by the caller (computed from the context).
    """

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out or stride != (1, 1):
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = y * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return torch.relu(y + self.shortcut(x))


class EnhancedCNN(MixModel):
    """Residual CNN conditioned on the musical context, with frequency-aware pooling.

    Layers (mel × time): a stem (conv 3×3 with stride 1×2 → BN → ReLU → average-pool 2×2:
    64 × 345 → 32 × 87 at 16 channels), three FiLM residual blocks (conv 3×3 → BN → ReLU →
    conv 3×3 → BN → FiLM, plus a 1×1-conv shortcut, ReLU) to 32, 48 and 96 channels with
    strides 1×2, 2×2 and 1×2 (→ 32 × 44 → 16 × 22 → 16 × 11), and a 1×1 conv to 32 channels.
    Then **pooling over time only**: the mean and standard deviation over time of each
    (channel, band) keep the 16 frequency bands (4 mel bands each) apart, since the EQ targets
    depend on *which* bands are too loud or too quiet. Those 1,024 statistics and the context
    go through an MLP head (1,038 → 128 → ``n_out``, GELU, dropout 0.2) and a sigmoid.
    341,574 parameters (1.30 MiB of float32) for ``n_out = 6``.

    The context conditions every block by FiLM (Perez et al., 2018): an MLP (``context_size``
    → 64 → 2 × 176) gives each block a per-channel scale ``1 + gamma`` and shift ``beta``.
    Its last layer starts small (std 0.01), so training starts from a nearly unconditioned
    ResNet. The context is also concatenated to the pooled statistics before the head.
    Time is downsampled more than frequency throughout: the targets are stationary over a
    clip, the spectral shape is what matters. Takes clips of any length.
    """

    uses_context = True

    def __init__(
        self,
        *,
        n_out: int,
        n_mels: int = N_MELS,
        frames: int = CLIP_FRAMES,
        context_size: int = CONTEXT_SIZE,
        stem: int = 16,
        blocks: tuple[tuple[int, tuple[int, int]], ...] = (
            (32, (1, 2)),
            (48, (2, 2)),
            (96, (1, 2)),
        ),
        summary_channels: int = 32,
    ) -> None:
        super().__init__(n_out=n_out, n_mels=n_mels, frames=frames, context_size=context_size)
        self.stem = nn.Sequential(
            nn.Conv2d(2, stem, 3, stride=(1, 2), padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, ceil_mode=True),
        )
        self.blocks = nn.ModuleList()
        c_in, n_bands = stem, (n_mels + 1) // 2
        for c_out, stride in blocks:
            self.blocks.append(_FiLMResBlock(c_in, c_out, stride))
            c_in = c_out
            n_bands = (n_bands - 1) // stride[0] + 1
        self._film_sizes = [b.bn2.num_features for b in self.blocks]
        self.film = nn.Sequential(
            nn.Linear(context_size, 64), nn.GELU(), nn.Linear(64, 2 * sum(self._film_sizes))
        )
        nn.init.normal_(self.film[-1].weight, std=0.01)
        nn.init.zeros_(self.film[-1].bias)
        self.summary = nn.Sequential(
            nn.Conv2d(c_in, summary_channels, 1, bias=False),
            nn.BatchNorm2d(summary_channels),
            nn.ReLU(inplace=True),
        )
        self.head = _head(2 * summary_channels * n_bands + context_size, 128, n_out, dropout=0.2)
        _init_conv_bn(self)

    def _forward(self, mel: Tensor, context: Tensor) -> Tensor:
        film = self.film(context).split([n for n in self._film_sizes for _ in range(2)], dim=1)
        x = self.stem(mel)
        for i, block in enumerate(self.blocks):
            x = block(x, film[2 * i], film[2 * i + 1])
        x = self.summary(x)  # (batch, channels, bands, time)
        mean = x.mean(dim=3)
        std = torch.sqrt(x.var(dim=3, unbiased=False) + 1e-5)
        stats = torch.cat([mean.flatten(1), std.flatten(1), context], dim=1)
        return self.head(stats)


class AST(MixModel):
    """Audio Spectrogram Transformer (Gong et al., 2021) trained from scratch; ignores context.

    Layers: a BatchNorm of the two input channels (standardises mid and side: without it the
    patch embeddings are dominated by the spectrogram's offset and a from-scratch transformer
    learns much more slowly), non-overlapping patches of ``patch`` = 16 mel bands × 23 frames
    (0.53 s; 345 = 15 × 23) over both channels embedded by a conv with kernel = stride (64 ×
    345 → 4 × 15 = 60 patches; if ``frames`` is not a multiple of 23 the remainder is
    dropped), a learned [CLS] token, learned positional embeddings (one per patch and the CLS),
    a pre-norm transformer encoder (``dim`` 128, 4 layers, 4 heads, feed-forward 256, GELU,
    dropout 0.1), a final LayerNorm and a linear head on the CLS token (weights std 0.02, bias
    0), then a sigmoid. 633,226 parameters (2.42 MiB of float32) for ``n_out = 6``.

    The patches are wide in time and tall in frequency because the targets are stationary
    over a clip: 60 tokens keep a step cheap on a CPU (the attention is over 61 tokens).

    The positional embeddings are fixed to ``frames``: :meth:`forward` rejects clips of any
    other length, and inference feeds :data:`CLIP_FRAMES`-frame clips (:data:`CLIP_S` s) and
    averages their predictions.
    """

    def __init__(
        self,
        *,
        n_out: int,
        n_mels: int = N_MELS,
        frames: int = CLIP_FRAMES,
        context_size: int = CONTEXT_SIZE,
        patch: tuple[int, int] = (16, 23),
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        ff: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(n_out=n_out, n_mels=n_mels, frames=frames, context_size=context_size)
        if n_mels < patch[0] or frames < patch[1]:
            raise ValueError(f"a {n_mels} × {frames} spectrogram is smaller than a {patch} patch")
        self.patch = patch
        self.input_norm = nn.BatchNorm2d(2)
        self.grid = (n_mels // patch[0], frames // patch[1])
        n_patches = self.grid[0] * self.grid[1]
        self.embed = nn.Conv2d(2, dim, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=ff,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_out)
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, mel: Tensor, context: Tensor) -> Tensor:
        """As :meth:`MixModel.forward`, for clips of exactly ``frames`` frames."""
        if mel.ndim == 4 and mel.shape[-1] != self.frames:
            raise ValueError(
                f"AST takes clips of exactly {self.frames} frames (its positional embeddings "
                f"are fixed), got {mel.shape[-1]}"
            )
        return super().forward(mel, context)

    def _forward(self, mel: Tensor, context: Tensor) -> Tensor:
        x = self.embed(self.input_norm(mel)).flatten(2).transpose(1, 2)  # (batch, patches, dim)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.encoder(self.drop(x + self.pos))
        return self.head(self.norm(x[:, 0]))


_MODELS: dict[str, type[MixModel]] = {
    "baseline_cnn": BaselineCNN,
    "enhanced_cnn": EnhancedCNN,
    "ast": AST,
}


def build_model(
    name: str,
    *,
    n_out: int,
    n_mels: int = N_MELS,
    frames: int = CLIP_FRAMES,
    context_size: int = CONTEXT_SIZE,
) -> MixModel:
    """A freshly initialised mix model.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    n_out : int
        Number of predicted (normalised) parameters.
    n_mels, frames, context_size : int
        Input sizes: mel bands, spectrogram frames of a clip, context length.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return _MODELS[name](n_out=n_out, n_mels=n_mels, frames=frames, context_size=context_size)
