"""Clean-label poisoning of an SSM's implicit bias (the second seed paper): the experiment
and its figure."""
