"""UI-free experiments behind each page. Each is a plain function: settings in, tidy frames out,
callable from a page, a test, a benchmark or a notebook."""
