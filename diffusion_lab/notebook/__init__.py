"""What the notebooks show (chapters 01-07): figures, animations, widgets, live loss plots, attention maps.

Everything here has a static fallback: a saved notebook, GitHub and a PDF show a picture.

    figures.py         image grids, noising strips, schedule curves, the fidelity-diversity plot
    animation.py       GIFs in a live notebook, filmstrips elsewhere
    widgets.py         sliders and prompt boxes (ipywidgets), each with a static picture
    live_plot.py       the loss curve, redrawn while training runs
    attention_maps.py  per-word cross-attention maps of a text model
"""
