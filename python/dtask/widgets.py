"""dask.distributed's ``widgets`` module holds the Jinja templates of its
notebook representations; dtask's objects have plain-text reprs, so there
is nothing here to customise (the name exists so that code importing it
gets this explanation instead of an ImportError)."""

TEMPLATE_PATHS: list = []

