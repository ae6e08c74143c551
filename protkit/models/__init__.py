"""The models: the ESMC teacher (:mod:`.esmc`), the ProtHash student (:mod:`.prothash`), the layers
they share, model names and file names (:mod:`.names`), devices, and what a ``--model`` argument
names (:mod:`.resolve`)."""
