"""Models: the ESMC teacher and the ProtHash student."""
