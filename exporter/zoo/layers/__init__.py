"""Attention layers of the zoo, one idea per file; first argument is the channel count."""
from .axial_attn import AxialAttention1d, AxialAttention2d
from .c2f import C2f, ConvBNAct
from .coord_attn import CoordAttention
from .cross_attn import CrossAttention, MultiHeadCrossAttention
from .kv_attn import KeyValueAttention
from .mhsa import MHSA2d
from .multiscale_attn import MultiScaleAttention
from .self_attn import SelfAttention2d

__all__ = [
    "AxialAttention1d",
    "AxialAttention2d",
    "C2f",
    "ConvBNAct",
    "CoordAttention",
    "CrossAttention",
    "KeyValueAttention",
    "MHSA2d",
    "MultiHeadCrossAttention",
    "MultiScaleAttention",
    "SelfAttention2d",
]
