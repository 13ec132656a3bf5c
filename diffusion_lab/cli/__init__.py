"""The command line and its plumbing (chapters 00, 04, 05): ``python -m diffusion_lab train|sample|doctor|student``.

    main.py           the argument parser; bad input is one clear line, never a traceback
    commands.py       what train and sample do
    imagine_commands.py  imagine, upscale, vary: the /imagine loop (chapter 11)
    presets.py        the named training recipes behind every shipped checkpoint
    recipe.py         Preset: one recipe (model, data, schedule, settings)
    training_data.py  a recipe's data (generated, or embedded once by an autoencoder or a CLIP) and objective
    torch_support.py  the PyTorch versions the package supports, checked at import
    doctor.py         is this machine ready for the course?
    student.py        copies of the chapters with the solutions blanked
"""
