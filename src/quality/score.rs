//! Metrics from log-likelihoods: acc, acc_norm, mc2, standard errors, groups, paired tests.
