"""Order of the gallery: the paper's story, not the alphabet."""

STORY = (
    "plot_uv_quickstart.py",
    "plot_uv_sharpness_phenomena.py",
    "plot_route_to_chaos.py",
    "plot_phase_diagram.py",
    "plot_mlp_digits_eos.py",
    "plot_optimizers_eos.py",
    "plot_cross_entropy_eos.py",
    "plot_own_model.py",
    "plot_torch_cnn_digits.py",
    "plot_hessian_spectrum.py",
    "plot_dask_and_caching.py",
)


def story_order(filename):
    """Sort key of an example file: its place in STORY, unknown files last."""
    name = str(filename).rsplit("/", 1)[-1]
    return (STORY.index(name) if name in STORY else len(STORY), name)
