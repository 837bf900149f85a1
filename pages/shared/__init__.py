"""The page kit, shared by the router and every page: the page list (navigation), the shared
controls, a page's own options (page_options), long work on request (cached_run, redraw)."""
