"""What the notebooks show (chapters 01-11): figures, animations, widgets, live loss plots, attention maps.

Everything here has a static fallback: a saved notebook, GitHub and a PDF show a picture.

    figures.py         image grids, noising strips, schedule curves, the fidelity-diversity plot
    animation.py       GIFs in a live notebook, filmstrips elsewhere
    widgets.py         sliders and prompt boxes (ipywidgets), each with a static picture
    steps_explorer.py  a slider over the number of sampling steps, the same seeds at each (chapter 09)
    live_plot.py       the loss curve, redrawn while training runs
    attention_maps.py  per-word cross-attention maps of a text model
    imagine_app.py     the /imagine front end: prompt box, grid of four, U1-U4, V1-V4, history (chapter 11)
"""
