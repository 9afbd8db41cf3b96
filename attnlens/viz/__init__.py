"""Views: token heatmaps, image relevance rows, attention matrices before/after diffusion, per-layer curves, tables."""

from attnlens.viz.attention_map import attention_map_html, plot_attention_map
from attnlens.viz.image_attention_map import plot_image_attention_map
from attnlens.viz.image_rows import image_rows_html, plot_image_row
from attnlens.viz.layer_curves import plot_layer_curves
from attnlens.viz.token_heatmap import (
    token_heatmap_fragment,
    token_heatmap_html,
    token_heatmap_page,
    token_heatmap_text,
    write_token_heatmap_html,
)

__all__ = [
    "attention_map_html",
    "image_rows_html",
    "plot_image_attention_map",
    "plot_image_row",
    "plot_attention_map",
    "plot_layer_curves",
    "token_heatmap_fragment",
    "token_heatmap_html",
    "token_heatmap_page",
    "token_heatmap_text",
    "write_token_heatmap_html",
]
