"""What scores samples (chapters 05-07): judges trained here, and the metrics computed with them.

    mnist_classifier.py   the clean MNIST classifier, whose features also give FID
    attribute_scorer.py   reads shape, colour, size and position back from a shapes picture
    scene_scorer.py       reads a two-shape scene in canonical form: axis, then each object's shape and colour
    binding.py            attribute binding of generated two-shape scenes, read by the scene scorer (ch. 10-11)
    noisy_accuracy.py     how a classifier's accuracy falls with the noise level t
    clip_score.py         zero-shot attributes, CLIP score and binding accuracy with a CLIP (chapter 10)
    metrics.py            recognised share, class accuracy, FID, attribute accuracy, diversity, sliced Wasserstein
"""
