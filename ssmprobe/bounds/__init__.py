"""Theorem 4.1.1 (§4.1, Appendix A): the math (`theorem`), checked on trained LTI layers
(`lti`) and on Mamba's selective layers (`selective`), end to end on a checkpoint (`check`),
and drawn (`figures`)."""
