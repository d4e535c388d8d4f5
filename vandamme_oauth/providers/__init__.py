"""Provider dialects shipped with the package: one module per provider whose login needs more
than plain OAuth data (see [`Dialect`][vandamme_oauth.Dialect]).

Each registers itself under the entry-point group ``vandamme_oauth.dialects`` in
``pyproject.toml``, as a third-party dialect does: adding a provider means one new module and
one entry-point line. Nothing below this package imports it.
"""
