"""The command line and its plumbing (chapters 00, 04, 05): ``python -m diffusion_lab train|sample|doctor|student``.

    main.py       the argument parser; bad input is one clear line, never a traceback
    commands.py   what train and sample do
    presets.py    the named training recipes behind every shipped checkpoint
    doctor.py     is this machine ready for the course?
    student.py    copies of the chapters with the solutions blanked
"""
