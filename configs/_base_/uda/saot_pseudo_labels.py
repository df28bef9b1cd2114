# SAOT pseudo-labelling (paper Sec. 3): before training, SAOTPseudoLabelHook
# labels every target training image by unbalanced OT from retrieved source
# images under a learned metric + class-prototype prior, and writes the labels
# and confidences to pseudo_label_dir; the MLP head then trains on them.
saot_labeler = dict(
    type='SAOTLabeler',
    method='saot',  # full SAOT; ablations: nn, knn, ot_balanced, ot_unbalanced, ot_metric
    epsilon=0.05,  # entropic regularisation eps, in cost units (costs in [0, 2])
    rho=(0.1, 1.0),  # marginal penalties (rho_src, rho_tgt): sources of absent classes may stay
    alpha=1.0,  # weight of the appearance cost 1 - cos(phi(x), phi(t))
    beta=1.0,  # weight of the prototype prior 1 - max_k cos(phi(t), p_{y,k})
    num_neighbors=8,  # K source images retrieved per target (global descriptor)
    solver='auto',  # dense below dense_max_entries N*M, block-sparse above
    coverage=0.75,  # block-sparse support: share of each target's estimated mass kept
    num_iters=200,  # Sinkhorn iterations of each labelling solve
    tol=1e-2,  # marginal error at which a labelling solve stops
    metric_rank=32,  # rank of the learned metric's correction (phi = I + U V^T)
    metric_steps=150,  # metric training steps on source pairs
    metric_lr=1e-2,
    metric_pairs=4,  # source image pairs per step
    metric_patches=256,  # patches sampled per image per step
    num_prototypes=4,  # k-means prototypes per class
    confidence_mode='quantile',  # per-class confidence quantile filter
    confidence_quantile=0.2,  # drop the least confident 20 % of each class
    center_features=True,  # remove each domain's mean feature (style) first
    seed=0)
# '{work_dir}' is filled in by tools/train.py and tools/generate_pseudo_labels.py
pseudo_label_dir = '{work_dir}/pseudo_labels'
