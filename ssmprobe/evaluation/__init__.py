"""Final evaluation of checkpoints: clean, PGD and AutoAttack accuracy (`evaluate`) and the
accuracy patterns that suggest gradient masking (`sanity`)."""
