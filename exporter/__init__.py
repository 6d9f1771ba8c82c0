"""attn-export: the zoo and the export pipeline (everything that needs torch)."""
