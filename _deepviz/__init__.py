"""deepviz's implementation, one module per stage of the pipeline; `deepviz` is the public front.

    images    read a photo, or take one from memory, and scale its pixels for a network
    models    build a network: a built-in keras.applications classifier, a saved or in-memory model
    layers    name, list and check a model's layers
    forward   one multi-output model over the chosen layers; one forward pass; top predictions
    reduction each drawn layer reduced on the model's device: statistics and drawn channels, no full maps
    explain   Grad-CAM heatmaps of the top classes
    stats     statistics of a layer and the ranking of its channels
    mosaic    scale a layer's tiles, lay them out, colour and label them as one image
    figure    draw the photo, its heatmaps and the mosaics as a Matplotlib figure
    titles    fit a title to its width: wrapped between its parts, an over-long part shortened
    output    write figures, JSON and arrays atomically; where they go
    png       encode a figure's pixels as PNG, fast
    synthesis  feature visualisation: per channel, an image optimised to excite it; the cache of them
    synthesis_figure  draw each channel's map on the photo beside its pattern
    exemplars the photos of a set that excite each channel most: bounded tallies, merged batch by batch
    exemplar_figure  draw a layer's exemplars: one row per channel, each photo cropped around its peak
    ray_engine       the exemplar search on Ray Data workers (imported only with --engine ray)
    workers   draw and write each photo's files in worker processes, reports in input order
    analysis  one batch of photos reduced to what is printed and drawn
    cli       the command line's parser and progress
    run       the command line's run over many photos
    run_exemplars    the command line's --exemplars mode
    backend   the few lines each Keras backend needs of its own
    arguments the API's arguments checked, as the command line checks its flags
    defaults  the API's default values, told apart from the same values passed on purpose
    errors    the exceptions deepviz raises

Imports run one way: run and cli -> analysis, exemplars, workers -> stages -> backend and errors.
"""

__version__ = "0.1.0"
