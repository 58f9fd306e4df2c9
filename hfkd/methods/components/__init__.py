"""Loss pieces that several methods share, one concept per module; no method module imports another.

- ``kl_divergence``: the tempered KL of the ``div`` term (spec 1.3).
- ``logit_transforms``: per-sample logit standardisation (``logit_std``, ``kd``, ``dkd``).
- ``feature_lists``: which slice of the feature list a method reads, and the check that it holds maps.
- ``probing``: running the models on the example batch to size a method's modules.
- ``stage_map_pairs``: pairing and aligning the stage maps ``feats[1:-1]`` (AT, NST, VID).
- ``sample_similarity``: the ``[B, B]`` Gram matrix of a batch's flattened features (SP, SemCKD).
- ``memory_layout``: channel views that follow a map's memory layout (channels-last).
- ``full_precision``: an autocast-off region for fp32 matmuls.
- ``linear_embed``: RepDistiller's ``LinearEmbed`` (CC, CRD).
- ``teacher_head``: the checked, frozen copy of the teacher's classifier (SRRL, SimKD).
- ``collectives``: gathers and means over data-parallel processes (CRD's memory).
"""
