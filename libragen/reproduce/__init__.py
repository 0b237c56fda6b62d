"""``libragen reproduce``: the paper's recipe rerun end to end on LibraWorld, and a verdict per research question."""
