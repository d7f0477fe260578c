"""Standard and adversarial training: the loop (`fit`), one run as a user names it (`run`),
the best-checkpoint rule (`selection`) and augmentation (`augment`)."""
