"""`callcenter bench turns`: turn-taking on noisy phone lines, scored per caller behaviour."""
