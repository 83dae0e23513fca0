"""Bundle loading, backends, tiling, blending and noise fields."""
